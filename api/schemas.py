"""Request bodies, validated at the door: every rule names the field and what to change."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.generation_params import (
    ABSOLUTE_MAX_FRAMES,
    FPS_MAX,
    GUIDANCE_MAX,
    MIN_HEIGHT,
    GenerationDefaults,
    panorama_size_error,
    request_params,
)
from models.media.flow_kinds import FLOW_KINDS
from worker.deadlines import MAX_DEADLINE_S
from worker.jobs import DEFAULT_WEBHOOK_EVENTS, WebhookEvent


class GenerateRequest(BaseModel):
    """Fields left out (or null) take the chosen model's defaults (`GET /models`); values are checked against the
    model's limits when the job is accepted."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=1000)
    negative_prompt: str = Field("", max_length=1000)
    base_model: str = Field("tiny", max_length=64)
    flow_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    num_frames: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_FRAMES)
    height: int | None = Field(None, ge=MIN_HEIGHT, le=8192)
    width: int | None = Field(None, ge=2 * MIN_HEIGHT, le=16384)
    steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=0, le=GUIDANCE_MAX)
    seed: int | None = Field(None, ge=0, lt=2**31)
    fps: int | None = Field(None, ge=1, le=FPS_MAX)
    adapter_scale: float = Field(1.0, ge=0, le=2)
    loop: bool = Field(False, description="A seamless loop: the last frame flows into the first.")
    interpolate_to: Literal[24, 30] | None = Field(
        None, description="Motion-compensated frame interpolation to this playback rate (above fps), seam-aware."
    )
    latent_rotation: bool = True
    rotate_features: bool = True
    circular_padding: bool = True
    webhook_url: str | None = Field(None, max_length=2000, description="Called with the events in webhook_events.")
    webhook_events: list[WebhookEvent] = Field(
        list(DEFAULT_WEBHOOK_EVENTS),
        min_length=1,
        max_length=3,
        description="Which events call webhook_url: start (running), progress (at most one per 2 s), completed.",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        le=MAX_DEADLINE_S,
        description="Cancel the job (error_type deadline) if it has not finished this many seconds after submission "
        "(or the Cancel-After header).",
    )

    @model_validator(mode="after")
    def _panorama_size(self) -> GenerateRequest:
        if (
            self.height is not None
            and self.width is not None
            and (reason := panorama_size_error(self.height, self.width))
        ):
            raise ValueError(reason)
        return self

    def resolved(self, defaults: GenerationDefaults) -> dict[str, Any]:
        """Every field, with the model's defaults where the request left one out (one side of the size gives the
        other)."""
        return request_params(self.model_dump(), defaults)


def _generate_request_body() -> dict[str, Any]:
    """OpenAPI for POST /generate, which reads the body itself to take JSON or multipart with the file inline."""
    schema = GenerateRequest.model_json_schema()
    form = {
        **schema,
        "title": "GenerateForm",
        "properties": {
            **schema["properties"],
            "file": {"type": "string", "format": "binary", "description": "Motion file (as in POST /flows)."},
            "kind": {"type": "string", "enum": list(FLOW_KINDS), "default": "flow_video"},
        },
    }
    return {
        "required": True,
        "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}},
    }


GENERATE_REQUEST_BODY = _generate_request_body()
