"""Job events (GET /jobs/{id}/events): one Redis Stream per job, `dvd360:events:<id>`, written once by whoever changes
the job (the API when it queues or cancels a queued job, workers for the rest) and read by any API replica.

Why Streams rather than pub/sub: pub/sub keeps nothing, so a client that reconnects (or a replica that subscribes a
moment late) loses what was published meanwhile. A stream keeps the history under ordered ids, which are the SSE
event ids: `Last-Event-ID` resumes exactly after the last event seen (XREAD from that id: no loss, no duplicates), a
finished job replays its final event, and replicas need no coordination (all state is in Redis).

Bounded: XADD MAXLEN ~ caps a stream's length, the stream expires with the job record, and when the job finishes its
preview events but the last (nearly all of a stream's bytes, and worthless once the video exists) are deleted.
"""

from __future__ import annotations

import json
import re
from typing import Any

import redis

# 100 steps x (progress + preview) + a few state events, with room to spare
MAX_EVENTS = 1000
_STREAM_ID = re.compile(r"\d{1,19}(-\d{1,19})?", re.ASCII)

# One round trip, atomic: nothing is appended after the final event (a step that was in flight when the job was
# canceled); the final event drops all previews but the last; the stream expires with the job record.
_PUBLISH = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if last and last[2][5] == 'final' then return false end
local id
if ARGV[5] == '1' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[1], 'data', ARGV[2], 'final', '1')
  local previews = {}
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
    if entry[2][2] == 'preview' then table.insert(previews, entry[1]) end
  end
  for i = 1, #previews - 1 do redis.call('XDEL', KEYS[1], previews[i]) end
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[1], 'data', ARGV[2])
end
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 then ttl = tonumber(ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return id
"""


def stream_key(job_id: str) -> str:
    return f"dvd360:events:{job_id}"


def publish(
    client: redis.Redis, job_id: str, type_: str, data: dict[str, Any], *, job_key: str, ttl_s: int, final: bool = False
) -> str | None:
    """Append one event; returns its id, or None when the job's final event is already there. The stream gets the
    job record's remaining lifetime (`job_key`), or `ttl_s` when the record is gone. `final` marks the job's last
    event (all previews but the last are deleted then)."""
    script = client.register_script(_PUBLISH)  # cached by redis-py: EVALSHA after the first call
    event_id = script(
        keys=[stream_key(job_id), job_key],
        args=[type_, json.dumps(data, separators=(",", ":")), MAX_EVENTS, ttl_s * 1000, int(final)],
    )
    return event_id.decode() if isinstance(event_id, bytes) else event_id or None


def eta_s(elapsed_s: float, step: int, total: int) -> float:
    """Seconds left at the mean pace of the steps so far."""
    return round(elapsed_s / step * (total - step), 1)


def parse_entry(entry: tuple[Any, dict[Any, Any]]) -> tuple[str, str, dict[str, Any]]:
    """An XRANGE/XREAD entry -> (event id, type, data)."""
    event_id, fields = entry
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    type_ = fields["type"].decode() if isinstance(fields["type"], bytes) else fields["type"]
    return (event_id.decode() if isinstance(event_id, bytes) else event_id), type_, json.loads(fields["data"])


def id_tuple(event_id: str) -> tuple[int, int]:
    """A stream id "ms-seq" as a comparable pair; ValueError for anything else (a forged Last-Event-ID)."""
    if not _STREAM_ID.fullmatch(event_id):
        raise ValueError(f"not a stream id: {event_id[:40]!r}")
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)
