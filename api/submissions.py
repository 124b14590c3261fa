"""Accepting a generation request: every check first, then one job record and one queued task (from JSON with a
flow_id, or multipart with the motion file inline). Nothing is stored or enqueued for a refused request, and whatever
a refused request reserved or stored is given back."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import Services
from api.idempotency import body_digest, wait_for_record
from api.uploads import UploadRecord, file_sha256
from core.admission import admit
from core.records import JobRecord
from core.request import GenerationRequest, RequestError


def field_errors(errors: list[dict[str, Any]], prefix: tuple[str, ...] = ("body",)) -> RequestValidationError:
    """A 422 naming each field (never echoing the value sent: it may be huge, or not even JSON-encodable)."""
    return RequestValidationError([{"type": e["type"], "loc": (*prefix, *e["loc"]), "msg": e["msg"]} for e in errors])


def parse_generate(data: Any) -> GenerationRequest:
    """Validate a JSON object or form fields into the typed request."""
    try:
        return GenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise field_errors(exc.errors(include_url=False, include_context=False, include_input=False)) from None


def refusal(exc: RequestError) -> HTTPException | RequestValidationError:
    """A request the service cannot run: a field error, or (its cost) a sentence."""
    if exc.field is None:
        return HTTPException(422, exc.message)
    return field_errors([{"type": "value_error", "loc": (exc.field,), "msg": exc.message}])


def accept(
    svc: Services, who: str, body: GenerationRequest, idempotency_key: str | None, upload: UploadFile | None = None,
    kind: str = "flow_video",
) -> tuple[JobRecord, bool]:  # fmt: skip
    """Queue one job; returns (job record, replayed?). The cheap checks come first; an idempotent retry is answered
    before anything is reserved (it needs no slot: its job has one); the upload is checked and stored last."""
    try:
        request = admit(body, svc.registry, svc.settings)
    except RequestError as exc:
        raise refusal(exc) from None
    if upload is not None and body.flow_id:
        raise HTTPException(422, "send either a file or a flow_id, not both")
    job_id = uuid.uuid4().hex
    if idempotency_key is not None:
        digest = body_digest(request.model_dump(mode="json"), file_sha256(upload.file) if upload else None)
        if (earlier := svc.idempotency.claim(who, idempotency_key, digest, job_id)) is not None:
            return wait_for_record(svc.store.get, earlier), True
    flow: UploadRecord | None = None
    reserved = False
    try:
        svc.limits.reserve_job(who, job_id)
        reserved = True
        if upload is not None:
            flow = svc.uploads.receive(who, upload.file, upload.filename, kind)
        elif body.flow_id and (flow := svc.uploads.get(who, body.flow_id)) is None:
            raise RequestError("flow_id", f"flow_id {body.flow_id!r} is unknown; upload it with POST /flows first")
        if flow is not None:
            request.check_motion_length(flow.frames)
    except BaseException as exc:
        if reserved:
            svc.limits.release_job(who, job_id)
        if idempotency_key is not None:
            svc.idempotency.release(who, idempotency_key)
        if upload is not None and flow is not None:
            svc.uploads.discard(flow)
        if isinstance(exc, RequestError):
            raise refusal(exc) from None
        raise
    if flow is not None:
        request = request.model_copy(update={"flow_id": flow.id})  # an inline upload is named like any other
    return svc.store.create(who, request, job_id, flow.ref if flow else None), False
