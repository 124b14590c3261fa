"""The OpenAPI document, true to what the API sends, so a client generated from /openapi.json works without edits:
readable operation ids (the route functions' names), every status a route answers with its body and headers, the
request bodies the /generate route reads itself (JSON or multipart), the event stream's and the files' media types,
and the API-key security schemes (header or bearer), which give /docs its Authorize button."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from api.schemas import EVENT_MODELS, Error, FieldError
from core.request import FlowKind, GenerationRequest

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}
ERRORS = {
    401: ("No API key, or an unknown or revoked one: send it as X-API-Key or a bearer token.", {}),
    403: ("The download link is invalid or expired: fetch the job again for a fresh one.", {}),
    404: ("No such job, upload or file (another API key's are not found either).", {}),
    409: ("An identical request (same Idempotency-Key) is still being accepted: retry in a second.", {}),
    410: ("The job expired and its files were deleted; `detail` says when they are kept.", {}),
    413: ("The body is too large (uploads: DVD360_MAX_UPLOAD_MB; JSON: 1 MB).", {}),
    422: ("The request cannot be run as sent: `detail` lists the fields to change, or says why.", {}),
    429: ("Over a rate limit or the API key's active-job cap.", RETRY_AFTER),
    431: ("The request's headers are over 16 KB.", {}),
    503: ("The job store or storage is unavailable.", RETRY_AFTER),
}
ON_EVERY_ROUTE = (413, 422, 431, 503)  # the request-size middleware, parameter checks and an unreachable Redis


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses, each with the one error shape."""
    return {
        code: {
            "model": Error,
            "description": ERRORS[code][0],
            **({"headers": ERRORS[code][1]} if ERRORS[code][1] else {}),
        }
        for code in codes
    }


class GenerationForm(GenerationRequest):
    """POST /generate as multipart/form-data: the request's fields plus the motion file (as in POST /flows)."""

    file: bytes = Field(description="Motion: a flow video, raw flow (.npy/.npz/.flo) or a 360° clip.")
    kind: FlowKind = "flow_video"


class FlowUploadForm(BaseModel):
    """POST /flows: the motion file and what it holds."""

    file: bytes = Field(description="A flow video, raw flow (.npy/.npz/.flo) or a 360° clip.")
    kind: FlowKind = "flow_video"


SCHEMA_REF = "#/components/schemas/{model}"
GENERATE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": SCHEMA_REF.format(model="GenerationRequest")}},
        "multipart/form-data": {"schema": {"$ref": SCHEMA_REF.format(model="GenerationForm")}},
    },
}
# the bodies as pydantic describes them (FastAPI's own form schema marks a file with `contentMediaType`, which
# generators such as openapi-python-client do not read as a file; `format: binary` they do)
UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {"$ref": SCHEMA_REF.format(model="FlowUploadForm")}}},
}
EVENT_STREAM_DESCRIPTION = "\n".join(
    [
        "Server-Sent Events (`text/event-stream`). Each message has an `id:` (resume with Last-Event-ID), an `event:` "
        "type and one line of JSON `data:`, whose schema per type is:",
        "",
        *(f"- `{name}`: {model.__name__}" for name, model in EVENT_MODELS.items()),
        "",
        "The stream ends after the final event (succeeded, failed or canceled); `: keep-alive` comments come every "
        "15 s.",
    ]
)
EVENT_STREAM = {
    200: {"description": EVENT_STREAM_DESCRIPTION, "content": {"text/event-stream": {"schema": {"type": "string"}}}}
}
BINARY = {"schema": {"type": "string", "format": "binary"}}
FILE = {200: {"description": "The file.", "content": {"video/mp4": BINARY, "image/jpeg": BINARY}}}


def operation_id(route: APIRoute) -> str:
    """create_job, get_job, list_jobs, ...: the route functions are named for what they do."""
    return route.name


def install(app: FastAPI) -> None:
    """Make /openapi.json add the schemas that routes reach only by reference: the bodies /generate reads itself and
    the event payloads."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                separate_input_output_schemas=False,
            )
            extra = [GenerationRequest, GenerationForm, FlowUploadForm, FieldError, *set(EVENT_MODELS.values())]
            _, defs = models_json_schema([(m, "validation") for m in extra], ref_template=SCHEMA_REF)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.pop("Body_upload_flow", None)  # replaced by FlowUploadForm
            for name, definition in defs.get("$defs", {}).items():
                schemas.setdefault(name, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
