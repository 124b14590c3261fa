"""One Redis reader per API process for every open job event stream (GET /jobs/{id}/events, Prefer: wait).

A blocking XREAD per client would hold one Redis connection per open stream (200 viewers: 200 connections).
Instead one task blocks in a single XREAD over every watched stream and hands each new entry to the subscribers of
its stream; subscribers read their backlog with short XRANGEs on a small shared pool. A newly watched stream
interrupts the blocked XREAD through this process's own wake-up stream, so its first live event is not delayed.

Subscribers see every entry once, in order: a subscriber registers at the reader's position for its stream (or the
stream's last id when no one watched it), reads everything up to there as backlog, and takes only newer ids live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import Caller
from api.limits import StreamSlots
from core.events import id_tuple, parse_entry, stream_key
from core.records import TERMINAL

log = logging.getLogger(__name__)
BLOCK_MS = 5000
POOL_SIZE = 16  # backlog reads, wake-ups and queue lengths: short commands, so a few connections serve many streams


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict


@dataclass(eq=False)  # kept in sets by identity
class Subscription:
    hub: EventHub
    key: str
    after: str | None  # backlog starts after this id (None: from the first)
    upto: str = "0-0"  # backlog ends here; live events are newer
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def backlog(self) -> list[Event]:
        low = f"({self.after}" if self.after else "-"
        if self.after and id_tuple(self.after) >= id_tuple(self.upto):
            return []
        return [Event(*parse_entry(e)) for e in await self.hub.client.xrange(self.key, low, self.upto)]

    async def next(self, timeout: float | None) -> Event | None:
        """The next live event, or None after `timeout` seconds without one."""
        floor = max(id_tuple(self.upto), id_tuple(self.after or "0-0"))
        while True:
            try:
                event = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                return None
            if id_tuple(event.id) > floor:
                return event


@dataclass(eq=False)
class Watch:
    """What a long-lived request (an event stream, a Prefer: wait) holds: one of its key's stream slots, renewed, and
    its caller, whose key is checked again every `recheck_s`, so a revoked key loses what it had open."""

    hub: EventHub
    caller: Caller
    slot: str
    recheck_s: float
    checked_at: float = field(default_factory=time.monotonic)

    async def still_valid(self) -> bool:
        if time.monotonic() - self.checked_at < self.recheck_s:
            return True
        self.checked_at = time.monotonic()
        await self.hub.slots.renew(self.hub.client, self.caller.owner, self.slot)
        return await run_in_threadpool(self.caller.still_valid)

    async def close(self) -> None:
        await self.hub.slots.give_back(self.hub.client, self.caller.owner, self.slot)


class EventHub:
    def __init__(self, redis_url: str, slots: StreamSlots, recheck_s: float) -> None:
        self.redis_url, self.slots, self.recheck_s = redis_url, slots, recheck_s
        self._loop: asyncio.AbstractEventLoop | None = None

    def _start(self) -> None:
        """Clients and state for the running event loop (a test client may run each request in a new loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        # a blocking pool: at a burst of new streams (measured: 200 at once) callers wait for a connection instead
        # of failing with "Too many connections"
        pool = aioredis.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=POOL_SIZE, timeout=30, socket_timeout=5
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self._reader = aioredis.Redis.from_url(
            self.redis_url, single_connection_client=True, socket_timeout=BLOCK_MS / 1000 + 5
        )
        self._subscribers: dict[str, set[Subscription]] = {}
        self._positions: dict[str, str] = {}  # the last id the reader passed on, per watched stream
        self._wake_key, self._wake_id = f"dvd360:events-wake:{uuid.uuid4().hex}", "0-0"
        self._task: asyncio.Task | None = None

    async def watch(self, caller: Caller) -> Watch:
        """A stream slot for `caller` (429 when its key holds too many), and the watch over its key."""
        self._start()
        return Watch(self, caller, await self.slots.take(self.client, caller.owner), self.recheck_s)

    async def check_resume_id(self, job_id: str, after: str) -> None:
        """422 for a Last-Event-ID beyond the stream's last event: resuming after it would wait for ever."""
        self._start()
        last = await self.client.xrevrange(stream_key(job_id), count=1)
        if id_tuple(after) > id_tuple(parse_entry(last[0])[0] if last else "0-0"):
            raise HTTPException(422, "Last-Event-ID is not an id this job's stream sent; reconnect without it")

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str, after: str | None) -> AsyncIterator[Subscription]:
        self._start()
        key = stream_key(job_id)
        last = await self.client.xrevrange(key, count=1)
        sub = Subscription(self, key, after)
        watched = key in self._subscribers
        if watched:
            sub.upto = self._positions[key]
        else:
            sub.upto = parse_entry(last[0])[0] if last else "0-0"
            self._subscribers[key], self._positions[key] = set(), sub.upto
        self._subscribers[key].add(sub)  # before any await: from here on the reader hands it every newer entry
        try:
            if not watched:
                await self._wake()
            yield sub
        finally:
            self._subscribers[key].discard(sub)
            if not self._subscribers[key]:
                del self._subscribers[key], self._positions[key]

    async def _wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read())
        else:  # the reader is blocked on the old set of streams: a wake-up entry makes it come back now
            await self.client.xadd(self._wake_key, {"w": 1}, maxlen=1)
            await self.client.expire(self._wake_key, 60)

    async def _read(self) -> None:
        while self._subscribers:
            streams = {self._wake_key: self._wake_id, **self._positions}
            try:
                reply = await self._reader.xread(streams, block=BLOCK_MS)
            except Exception as exc:  # Redis away or restarting: the streams wait, then resume where they were
                log.warning("event reader: XREAD failed (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)
                continue
            for raw_key, entries in reply or []:
                key = raw_key.decode()
                if key == self._wake_key:
                    self._wake_id = entries[-1][0].decode()
                    continue
                for entry in entries:
                    event = Event(*parse_entry(entry))
                    if key in self._positions:
                        self._positions[key] = event.id
                    for sub in self._subscribers.get(key, ()):
                        sub.queue.put_nowait(event)

    async def finished_within(self, job_id: str, timeout_s: float, watch: Watch) -> bool:
        """Whether the job's final event is there or comes within `timeout_s` (Prefer: wait); False as soon as the
        caller's key stops being valid."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with self.subscribe(job_id, None) as sub:
            if any(e.type in TERMINAL for e in await sub.backlog()):
                return True
            while (left := deadline - loop.time()) > 0:
                event = await sub.next(min(left, watch.recheck_s))
                if not await watch.still_valid():
                    return False
                if event is not None and event.type in TERMINAL:
                    return True
        return False


def event_hub(request: Request) -> EventHub:
    """The app's hub (made in `api.app.create_app`)."""
    return request.app.state.event_hub


Hub = Annotated[EventHub, Depends(event_hub)]
