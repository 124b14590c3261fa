"""Request bodies, validated at the door: every rule names the field and what to change."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.media.flow_kinds import FLOW_KINDS


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=1000)
    negative_prompt: str = Field("", max_length=1000)
    base_model: str = Field("tiny", max_length=64)
    flow_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    num_frames: int = Field(16, ge=8, le=24)
    height: int = Field(512, ge=64)
    width: int = Field(1024, ge=128)
    steps: int = Field(25, ge=1, le=100)
    guidance_scale: float = Field(7.5, ge=0, le=30)
    seed: int | None = Field(None, ge=0, lt=2**31)
    fps: int = Field(8, ge=1, le=60)
    adapter_scale: float = Field(1.0, ge=0, le=2)
    latent_rotation: bool = True
    rotate_features: bool = True
    circular_padding: bool = True
    webhook_url: str | None = Field(None, max_length=2000, description="Called with each state change.")

    @model_validator(mode="after")
    def _panorama_size(self) -> GenerateRequest:
        if self.height % 64 or self.width != 2 * self.height:
            raise ValueError("width must be 2 x height and height a multiple of 64 (e.g. 512 x 1024)")
        return self


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
