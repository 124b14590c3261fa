"""Accepting a generation request: every check first, then one job record and one queued task (from JSON with a
flow_id, or multipart with the motion file inline). Nothing is stored or enqueued for a refused request."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import Services
from api.idempotency import body_digest, wait_for_record
from api.schemas import GenerateRequest
from models.generation_params import limit_errors, panorama_size_error
from models.media.errors import FlowInputError
from models.media.flow_video import sample_indices
from models.media.interpolate import check_rate
from worker.cost import cost_refusal, model_kind
from worker.deadlines import schedule_deadline
from worker.jobs import queue_name
from worker.webhook_targets import webhook_target_error


def parse_generate(data: Any) -> GenerateRequest:
    """Validate a JSON object or form fields; errors read like FastAPI's own 422s (loc starts with "body")."""
    try:
        return GenerateRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def field_error(field: str, message: str) -> RequestValidationError:
    """A 422 shaped like FastAPI's own, naming the field."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}])


def resolve(svc: Services, body: GenerateRequest) -> dict[str, Any]:
    """The request with the model's defaults filled in, checked against the model's and the server's limits."""
    if body.base_model not in svc.registry:
        names = ", ".join(svc.registry.names())
        raise field_error("base_model", f"base_model {body.base_model!r} is unknown; use one of {names}")
    spec = svc.registry.get(body.base_model)
    fields = body.resolved(spec.generation_defaults)
    if reason := panorama_size_error(fields["height"], fields["width"]):  # one side given, the other a default
        raise field_error("width", reason)
    for field, message in limit_errors(fields, spec.generation_limits, svc.settings.max_height):
        raise field_error(field, message)
    if reason := cost_refusal(fields, model_kind(spec), svc.settings):  # would die at the time limit
        raise HTTPException(422, reason)
    try:
        check_rate(fields["interpolate_to"], fields["fps"])
    except ValueError as exc:
        raise field_error("interpolate_to", str(exc)) from None
    if body.webhook_url and (reason := webhook_target_error(body.webhook_url, svc.settings.webhook_allow_private)):
        raise field_error("webhook_url", reason)
    return fields


def check_motion_length(flow: dict, fields: dict[str, Any]) -> None:
    """A condition shorter than the video is refused here, not in the worker (unless `loop` repeats it)."""
    try:
        sample_indices(flow.get("frames", 0), fields["num_frames"], fields.get("loop", False))
    except FlowInputError as exc:
        raise field_error("num_frames", str(exc)) from None


def accept(svc: Services, who: str, body: GenerateRequest, idempotency_key: str | None, upload=None, kind: str = ""):
    """Queue one job; returns (job record, replayed?). The cheap checks come before the upload is read and stored,
    and whatever a refused request reserved or stored is given back."""
    fields = resolve(svc, body)
    inline = upload is not None
    if inline and body.flow_id:
        raise HTTPException(422, "send either a file or a flow_id, not both")
    job_id = uuid.uuid4().hex
    svc.limits.reserve_job(who, job_id)
    flow = None
    try:
        flow = svc.uploads.receive(who, upload.file, upload.filename, kind) if inline else None
        if body.flow_id and (flow := svc.uploads.get(who, body.flow_id)) is None:
            raise field_error("flow_id", f"flow_id {body.flow_id!r} is unknown; upload it with POST /flows first")
        if flow is not None:
            check_motion_length(flow, fields)
        if idempotency_key is not None:
            digest = body_digest(fields, flow["sha256"] if inline else None)
            if (earlier := svc.idempotency.claim(who, idempotency_key, digest, job_id)) is not None:
                raise Replayed(earlier)
    except (HTTPException, RequestValidationError, Replayed) as exc:
        svc.limits.release_job(who, job_id)
        if inline and flow is not None:
            svc.uploads.discard(flow)
        if isinstance(exc, Replayed):
            return wait_for_record(svc.store.get, exc.job_id), True
        raise
    request = dict(fields)
    if flow is not None:
        request.update(flow_id=flow["id"], flow_key=flow["key"], flow_kind=flow["kind"])
    job = svc.store.create(who, request, job_id)
    svc.celery.send_task("dvd360.generate", args=[job_id], queue=queue_name(body.base_model))
    schedule_deadline(svc.celery, job)
    return job, False


class Replayed(Exception):
    """An earlier request with the same Idempotency-Key and body made this job."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id
