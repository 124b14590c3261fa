"""The reaper: one always-running process (`dvd360 reaper`; started by `dvd360 serve`, its own service in compose
and k8s) that makes sure every job ends and nothing is kept past its time. Every DVD360_REAPER_INTERVAL_S it

- requeues a `running` job whose lease lapsed (its worker died or hung), or fails it once it has been delivered
  MAX_DELIVERIES times;
- fails a `queued` job that has no broker message (the record was written, then sending the message failed):
  older than DVD360_QUEUED_GRACE_S, in neither its queue list nor kombu's `unacked` hash, on two passes running;
- forgets finished or expired jobs in the unfinished index and the per-key active sets (self-healing accounting);
- deletes expired outputs and uploads (core/retention.py).

Between passes, every DVD360_DEADLINE_POLL_S, it cancels the jobs whose deadline has come (core/deadlines.py).

Several replicas may run: a Redis lock lets one work at a time. Torch-free (it runs on the API image)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

from core.deadlines import cancel_fields, take_due
from core.job_metrics import record_reaped
from core.jobs import (
    MAX_DELIVERIES,
    REPEATED_CRASH,
    UNFINISHED_KEY,
    JobStore,
    active_key,
    job_key,
    queue_name,
    waiting_key,
)
from core.records import JobRecord
from core.retention import sweep
from core.settings import Settings
from worker.lease import lease_key

log = logging.getLogger(__name__)
LOCK_KEY = "dvd360:reaper:lock"
UNACKED_KEY = "unacked"  # kombu's Redis transport: delivered, not yet acknowledged messages
PRIORITY_SEPARATOR, PRIORITY_STEPS = "\x06\x16", (3, 6, 9)  # kombu's queue names for prioritised messages
LOST_MESSAGE = "the job was accepted but its queue message was lost; submit it again"


class Reaper:
    def __init__(self, store: JobStore, storage, settings: Settings) -> None:
        self.client, self.store, self.storage, self.settings = store.redis, store, storage, settings
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.suspects: set[str] = set()  # queued jobs missing from the broker on the last pass
        self.stale_members: set[tuple[bytes, bytes]] = set()  # active-set members with no job, last pass

    def run(self, stop: threading.Event) -> None:
        next_pass = time.monotonic()
        while not stop.is_set():
            try:
                if self._hold_lock():
                    self.enforce_deadlines()
                    if time.monotonic() >= next_pass:
                        next_pass = time.monotonic() + self.settings.reaper_interval_s
                        counts = self.pass_once()
                        if any(counts.values()):
                            log.info("reaper: %s", counts)
            except redis.RedisError as exc:
                log.warning("reaper: Redis unavailable (%s); retrying", exc)
            stop.wait(self.settings.deadline_poll_s)

    def enforce_deadlines(self, now: float | None = None) -> int:
        """Cancel each job whose deadline has come, once: a queued one right away, a running one at its next step
        (its worker names it a deadline)."""
        fired, now = 0, time.time() if now is None else now
        for job_id in take_due(self.client, now):
            job = self.store.get(job_id)
            if job is None or job.finished:
                continue
            self.store.request_cancel(job_id)
            if job.state == "queued":
                self.store.transition(job_id, "canceled", **cancel_fields(job, now))
            fired += 1
        return fired

    def _hold_lock(self) -> bool:
        ttl_ms = int(max(self.settings.reaper_interval_s, self.settings.deadline_poll_s) * 3000)
        if self.client.set(LOCK_KEY, self.me, nx=True, px=ttl_ms):
            return True
        if (self.client.get(LOCK_KEY) or b"").decode() == self.me:
            self.client.pexpire(LOCK_KEY, ttl_ms)
            return True
        return False

    def pass_once(self, now: float | None = None) -> dict[str, int]:
        now = time.time() if now is None else now
        counts = {"requeued": 0, "failed": 0, "canceled": 0, "forgotten": 0}
        messages = _BrokerMessages(self.client)
        suspects = set()
        for raw_id, raw_owner in self.client.hgetall(UNFINISHED_KEY).items():
            job_id, owner = raw_id.decode(), raw_owner.decode()
            job = self.store.get(job_id)
            if job is None or job.finished:  # expired record, or a finish that left the index behind
                self.client.hdel(UNFINISHED_KEY, job_id)
                self.client.srem(active_key(owner), job_id)
                counts["forgotten"] += 1
            elif job.state == "running" and not self.client.exists(lease_key(job_id)):
                counts[self._abandoned(job)] += 1
            elif job.state == "queued" and now - job.created_at > self.settings.queued_grace_s:
                if messages.has(queue_name(job.request.base_model), job_id):
                    continue
                if job_id in self.suspects:  # missing twice: not a message between BRPOP and `unacked`
                    self.store.transition(job_id, "failed", error_type="internal", error=LOST_MESSAGE)
                    record_reaped(self.client, "lost_message", "failed")
                    counts["failed"] += 1
                else:
                    suspects.add(job_id)
        self.suspects = suspects
        counts["forgotten"] += self._heal_active_sets() + self._heal_waiting_sets()
        counts.update(sweep(self.client, self.storage, self.settings.result_ttl_s, self.settings.upload_ttl_s, now))
        return counts

    def _heal_active_sets(self) -> int:
        """Drop members of the per-key active sets that are no unfinished job (a reservation whose request then
        crashed before its record was written): each set then counts only what really is queued or running."""
        healed, stale_now = 0, set()
        unfinished = {k.decode() for k in self.client.hkeys(UNFINISHED_KEY)}
        for key in self.client.scan_iter(match=active_key("*"), count=500):
            for member in self.client.smembers(key):
                if member.decode() not in unfinished and not self.client.exists(job_key(member.decode())):
                    stale_now.add((key, member))
        # a reservation comes before its record (an inline upload is checked in between): stale on two passes
        for key, member in stale_now & self.stale_members:
            healed += self.client.srem(key, member)
        self.stale_members = stale_now
        return healed

    def _heal_waiting_sets(self) -> int:
        """Drop from each model's waiting set the jobs that are no longer unfinished (an expired record), so they
        count in no one's queue position."""
        unfinished = {k.decode() for k in self.client.hkeys(UNFINISHED_KEY)}
        healed = 0
        for key in self.client.scan_iter(match=waiting_key("*"), count=500):
            stale = [m for m in self.client.zrange(key, 0, -1) if m.decode() not in unfinished]
            healed += self.client.zrem(key, *stale) if stale else 0
        return healed

    def _abandoned(self, job: JobRecord) -> str:
        """A running job nobody holds the lease of: cancel, fail at the delivery cap, or queue it again."""
        job_id = job.id
        if self.store.cancel_requested(job_id):
            action = (
                "canceled"
                if self.store.transition(job_id, "canceled", **cancel_fields(job)).state == "canceled"
                else ""
            )
        elif job.deliveries >= MAX_DELIVERIES:
            done = self.store.transition(job_id, "failed", error_type="internal", error=REPEATED_CRASH)
            action = "failed" if done.state == "failed" else ""
        else:
            requeued = self.store.transition(job_id, "queued")
            action = "requeued" if requeued.state == "queued" else ""
            if action:
                self.store.enqueue(requeued)
        if not action:  # it finished between our two reads
            return "forgotten"
        record_reaped(self.client, "lease_expired", action)
        log.warning("reaper: job %s had no live lease: %s", job_id, action)
        return action


class _BrokerMessages:
    """The raw messages of the queues asked about and of `unacked`, read once per pass."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.unacked: bytes | None = None
        self.queues: dict[str, bytes] = {}

    def has(self, queue: str, job_id: str) -> bool:
        if queue not in self.queues:
            names = [queue, *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS)]
            self.queues[queue] = b"\n".join(m for name in names for m in self.client.lrange(name, 0, -1))
        if self.unacked is None:
            self.unacked = b"\n".join(self.client.hvals(UNACKED_KEY))
        needle = job_id.encode()  # the task's argument, plain in the message's argsrepr header
        return needle in self.queues[queue] or needle in self.unacked


def main() -> None:
    """`dvd360 reaper`: run until SIGTERM/SIGINT."""
    import signal

    from worker.runtime import runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rt = runtime()
    settings = rt.settings
    log.info("reaper: every %s s (lease %s s, results kept %s s, uploads %s s)", settings.reaper_interval_s,
             settings.job_lease_s, settings.result_ttl_s, settings.upload_ttl_s)  # fmt: skip
    Reaper(rt.store, rt.storage, settings).run(stop)


if __name__ == "__main__":
    main()
