"""GET /jobs/{id}/events: Server-Sent Events of everything that happens to a job (queued with its position, running,
progress, preview pictures, and the final state), read from the job's Redis stream (worker/events.py), so any API
replica serves any job. Same auth and isolation as GET /jobs/{id}; reads count at the read rate.

What a connection gets first: with `Last-Event-ID` (header or `?last_event_id=`), every event after that one; without
it, the latest event of each type so far (a finished job: only its final event), then live events. The stream ends
after the final event; `: keep-alive` comments every 15 s keep proxies from closing an idle one.
"""

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import Reader, Services, Svc
from api.event_hub import Event, EventHub, Hub, Watch
from api.job_view import base_url, public_job
from api.openapi import EVENT_STREAM, errors
from api.routes.jobs import own_job
from core.events import id_tuple
from core.jobs import queue_position, waiting_key
from core.records import TERMINAL, JobRecord

router = APIRouter(tags=["jobs"])
KEEP_ALIVE_S = 15
QUEUE_POLL_S = 1.0  # how often a queued job's position is looked at while it waits
FINAL_GRACE_S = 5.0  # a finished job's record is written just before its final event


def latest_of_each_type(events: list[Event]) -> list[Event]:
    """What a fresh connection needs to show the job now: its final event alone, else the newest of each type."""
    final = [e for e in events if e.type in TERMINAL]
    if final:
        return final[-1:]
    newest = {e.type: e for e in events}
    return sorted(newest.values(), key=lambda e: id_tuple(e.id))


async def message(svc: Services, job_id: str, event: Event, base: str) -> ServerSentEvent:
    """A final event carries the job as GET /jobs/{id} shows it (signed links are made per request, here)."""
    data = event.data
    if event.type in TERMINAL:
        job = await run_in_threadpool(svc.store.get, job_id)
        view = await run_in_threadpool(public_job, job, svc, base) if job else None
        extra = {"failed": ("error", "error_type"), "canceled": ("error_type",)}.get(event.type, ())
        data = {**{k: data.get(k) for k in extra}, "job": view.model_dump(mode="json") if view else None}
    return ServerSentEvent(json.dumps(data, separators=(",", ":")), event=event.type, id=event.id)


def state_after(event: Event) -> str:
    return "queued" if event.type == "queued" else "running"  # a final event ends the stream before this matters


async def stream_events(
    svc: Services, hub: EventHub, job: JobRecord, after: str | None, base: str, watch: Watch
) -> AsyncIterator[ServerSentEvent]:
    waiting = waiting_key(job.request.base_model)
    try:
        async with hub.subscribe(job.id, after) as sub:
            backlog = await sub.backlog()
            state, last_id, position = job.state, after or "0-0", None
            for event in backlog if after else latest_of_each_type(backlog):
                yield await message(svc, job.id, event, base)
                if event.type in TERMINAL:
                    return
            for event in backlog:
                state, last_id = state_after(event), event.id
                position = event.data.get("queue_position", position)
            finished = job.finished  # its final event is a moment behind, or older than event streams
            while True:
                wait = FINAL_GRACE_S if finished else QUEUE_POLL_S if state == "queued" else watch.recheck_s
                event = await sub.next(wait)
                if not await watch.still_valid():
                    return  # the key was revoked: the stream ends
                if event is None and finished:
                    data = {"state": job.state, "error": job.error, "error_type": job.error_type}
                    yield await message(svc, job.id, Event(last_id, job.state, data), base)
                    return
                if event is None and state == "queued":  # the position as GET /jobs/{id} has it: it only goes down
                    now = queue_position(await hub.client.zrank(waiting, job.id))
                    if position is None or now < position:
                        position = now
                        data = {"state": "queued", "queue_position": position}
                        # the id of the last stored event: a reconnect resumes exactly where it would have
                        yield ServerSentEvent(json.dumps(data), event="queued", id=last_id)
                    continue
                if event is None:
                    continue  # running: it woke to check the key again
                yield await message(svc, job.id, event, base)
                if event.type in TERMINAL:
                    return
                state, last_id = state_after(event), event.id
                position = event.data.get("queue_position", position)
    finally:
        await watch.close()


@router.get(
    "/jobs/{job_id}/events",
    summary="Server-Sent Events of a job (text/event-stream)",
    response_class=Response,
    responses={**EVENT_STREAM, **errors(401, 404, 410, 422, 429)},
)
async def job_events(
    job_id: str,
    request: Request,
    svc: Svc,
    caller: Reader,
    hub: Hub,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id.")] = None,
    last_event_id_query: Annotated[str | None, Query(alias="last_event_id", max_length=40)] = None,
) -> EventSourceResponse:
    after = last_event_id or last_event_id_query
    if after is not None:
        try:
            id_tuple(after)
        except ValueError:
            raise HTTPException(422, "Last-Event-ID must be an id this stream sent (like 1700000000000-0)") from None
    job = await run_in_threadpool(own_job, svc, job_id, caller.owner)
    if after is not None:
        await hub.check_resume_id(job.id, after)
    watch = await hub.watch(caller)
    return EventSourceResponse(
        stream_events(svc, hub, job, after, base_url(request, svc.settings.public_url), watch),
        ping=KEEP_ALIVE_S,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
        sep="\n",
    )
