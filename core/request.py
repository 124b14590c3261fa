"""`GenerationRequest`: the one typed request. It is the JSON and multipart body of `POST /generate` and its OpenAPI
schema, the request inside every stored job record, the generation task's input and the options of `dvd360 generate`
and `dvd360 submit`. Every check of a request is a validator here or `resolve` beside it, which the API and the CLI
both call; each failure names the field to change."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from models.generation_params import (
    ABSOLUTE_MAX_FRAMES,
    FPS_MAX,
    GUIDANCE_MAX,
    MIN_HEIGHT,
    Quality,
    Solver,
    limit_errors,
    panorama_size_errors,
    request_params,
)
from models.media.interpolate import check_rate, offered_rate
from models.registry import ModelRegistry, ModelSpec

MAX_DEADLINE_S = 24 * 3600
FlowKind = Literal["flow_video", "raw_flow", "panorama_clip"]
# what a webhook may ask for (`webhook_events`): running, progress, the final state; as Replicate's filter
WebhookEvent = Literal["start", "progress", "completed"]
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("completed",)
MODEL_DEFAULT = "Left out: the model's default (GET /models, `dvd360 models list`)."


class RequestError(ValueError):
    """A request the model or the service cannot run as asked; `field` names what to change (None: the request as a
    whole, e.g. its cost)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class GenerationRequest(BaseModel):
    """What to generate. Fields left out (or null) take the chosen model's defaults (`GET /models`); `resolve` fills
    them in and checks the result against the model's and the server's limits."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt: str = Field(min_length=1, max_length=1000, description="What the panorama shows.")
    negative_prompt: str = Field("", max_length=1000, description="What to steer away from.")
    base_model: str = Field("tiny", max_length=64, description="The base model (GET /models, `dvd360 models list`).")
    flow_id: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$", description="A motion upload (POST /flows) that conditions the video."
    )
    num_frames: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_FRAMES, description=MODEL_DEFAULT)
    height: int | None = Field(None, ge=MIN_HEIGHT, le=8192, description="Multiple of 64. " + MODEL_DEFAULT)
    width: int | None = Field(None, ge=2 * MIN_HEIGHT, le=16384, description="2 x height. Left out: 2 x height.")
    steps: int | None = Field(
        None, ge=1, le=1000, description="Denoising steps. Left out: the quality preset's, else the model's default."
    )
    quality: Quality | None = Field(
        None,
        description="draft, standard or high: a solver and a number of steps chosen per model (GET /models `presets`"
        "); `scheduler` and `steps`, when given, win.",
    )
    scheduler: Solver | None = Field(
        None,
        description="The sampling solver: ddim (the published sampling), dpmpp_2m (DPM-Solver++ 2M) or unipc; the "
        "multistep solvers reach ddim's result in fewer steps. Left out: the quality preset's, else ddim.",
    )
    guidance_scale: float | None = Field(None, ge=0, le=GUIDANCE_MAX, description=MODEL_DEFAULT)
    seed: int | None = Field(None, ge=0, lt=2**31, description="Left out: random; the job reports the one used.")
    fps: int | None = Field(None, ge=1, le=FPS_MAX, description="Playback rate. " + MODEL_DEFAULT)
    adapter_scale: float = Field(1.0, ge=0, le=2, description="Strength of the motion condition.")
    refine: bool = Field(
        True,
        description="Above the model's native size: generate at the native size, then upscale 2x and denoise again "
        "in spatial windows (keeps the composition); false: spatial windows from noise at the full size.",
    )
    loop: bool = Field(False, description="A seamless loop: the last frame flows into the first.")
    interpolate_to: Literal[24, 30] | None = Field(
        None, description="Motion-compensated frame interpolation to this playback rate (above fps), seam-aware."
    )
    latent_rotation: bool = Field(True, description="Roll the latents a quarter turn per step (360DVD).")
    rotate_features: bool = Field(True, description="Roll the adapter's features with the latents.")
    circular_padding: bool = Field(True, description="Width-circular padding from half-way (360DVD).")
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

    @field_validator("interpolate_to", mode="before")
    @classmethod
    def _offered_rate(cls, value: object) -> object:
        return None if value is None else offered_rate(value)  # its message names the rates on offer

    @field_validator("height", "width")
    @classmethod
    def _panorama_size(cls, value: int | None, info: ValidationInfo) -> int | None:
        # height is validated first; width is judged against it (the error names the side to change)
        sides = {"height": info.data.get("height"), info.field_name: value}
        for field, reason in panorama_size_errors(sides["height"], sides.get("width")):
            if field == info.field_name:
                raise ValueError(reason)
        return value

    def resolve(self, spec: ModelSpec, *, server_max_height: int | None = None) -> GenerationRequest:
        """This request with `spec`'s defaults where a field was left out (one side of the size gives the other;
        a `quality` gives a solver and steps), checked against the model's limits and the server's height cap.
        Raises RequestError naming the field. A motion condition's length is checked by `check_motion_length` once
        the file is read."""
        if self.base_model != spec.name:
            raise RequestError("base_model", f"base_model {self.base_model!r} is not {spec.name!r}")
        scheduler, steps = spec.sampling(self.quality, self.scheduler, self.steps)
        params = request_params({**self.model_dump(), "scheduler": scheduler, "steps": steps}, spec.generation_defaults)
        for field, message in panorama_size_errors(params["height"], params["width"]):
            raise RequestError(field, message)
        for field, message in limit_errors(params, spec.generation_limits, server_max_height):
            raise RequestError(field, message)
        try:
            check_rate(params["interpolate_to"], params["fps"])
        except ValueError as exc:
            raise RequestError("interpolate_to", str(exc)) from None
        return self.model_copy(update=params)

    def check_motion_length(self, frames_available: int) -> None:
        """A motion condition shorter than the video is refused before a job is made (unless `loop` repeats it)."""
        from models.media.errors import FlowInputError
        from models.media.flow_video import sample_indices

        try:
            sample_indices(frames_available, self.num_frames, self.loop)
        except FlowInputError as exc:
            raise RequestError("num_frames", str(exc)) from None


def find_model(registry: ModelRegistry, name: str) -> ModelSpec:
    """The registry entry a request names, or a RequestError listing the models there are."""
    if name not in registry:
        names = ", ".join(registry.names())
        raise RequestError("base_model", f"base_model {name!r} is unknown; use one of {names} (available: {names})")
    return registry.get(name)
