"""What the API answers, as typed, allow-listed models: each route's `response_model`, and the one error shape every
4xx and 5xx has. A field is public only if it is listed here: a new field in the job record stays internal until it
is added to `Job`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.records import ErrorType, JobState, Progress, QualityFigures, WebhookStatus
from core.request import FlowKind, GenerationRequest
from models.generation_params import GenerationDefaults, GenerationLimits, Quality, SamplingPreset


class FieldError(BaseModel):
    """One field a request got wrong: where (`loc`, from "body", "query" or "header"), why, and a stable type."""

    loc: list[str | int]
    msg: str
    type: str


class Error(BaseModel):
    """Every error answer: `detail` says what to change, as a sentence, or as a list of field errors when the
    request's fields are at fault (422)."""

    detail: str | list[FieldError]


class Unavailable(Error):
    """A dependency is down (GET /readyz): which ones."""

    status: Literal["unavailable"] = "unavailable"
    down: list[str]


class Outputs(BaseModel):
    """Signed download links of a succeeded job (absolute URLs), valid until `expires_at` (UNIX seconds)."""

    video_url: str | None = Field(None, description="The equirectangular MP4 with spherical metadata.")
    poster_url: str | None = Field(None, description="The middle frame, a 2:1 JPEG.")
    views_url: str | None = Field(
        None, description="Four perspective views (yaw 0, 90, 180, 270) of the middle frame in one JPEG."
    )
    expires_at: int | None = None


class JobTimings(BaseModel):
    queued_s: float = Field(description="Submission to start (so far, while queued).")
    running_s: float | None = Field(None, description="Start to finish (so far, while running).")
    total_s: float | None = Field(None, description="Submission to finish.")
    pipeline_s: float | None = Field(None, description="The worker's prediction: loading inputs, denoising, encoding.")
    step_s: float | None = Field(None, description="Mean seconds per denoising step.")


class Job(BaseModel):
    """A job as its owner sees it. Times are UNIX seconds."""

    id: str
    state: JobState
    request: GenerationRequest = Field(description="The request with every model default filled in.")
    progress: Progress
    queue_position: int | None = Field(None, description="While queued: 1 is next to start.")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_type: ErrorType | None = None
    seed: int | None = Field(None, description="The seed used (chosen at random when the request left it out).")
    outputs: Outputs
    timings: JobTimings
    quality_figures: QualityFigures | None = Field(None, description="Measured on the finished video.")
    webhook: WebhookStatus | None = Field(None, description="The last webhook delivery attempt.")


class JobList(BaseModel):
    jobs: list[Job]
    total: int
    offset: int
    limit: int


class Upload(BaseModel):
    """A stored motion upload; name it by `id` as `flow_id` in POST /generate."""

    id: str
    kind: FlowKind
    name: str = Field(description="The uploaded file's name (a label only).")
    bytes: int
    sha256: str
    frames: int = Field(description="Frames of motion the file holds.")


class Model(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    description: str
    installed: bool = Field(description="Whether its weights are on the workers' disk.")
    available: bool
    defaults: GenerationDefaults
    limits: GenerationLimits
    native_size: tuple[int, int] = Field(
        description="(height, width) the model generates at natively; larger outputs are denoised in spatial windows "
        "of this size, and refined from it."
    )
    presets: dict[Quality, SamplingPreset] = Field(description="What each `quality` samples with.")


class ModelList(BaseModel):
    models: list[Model]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"


class QueuedEvent(BaseModel):
    state: Literal["queued"] = "queued"
    queue_position: int


class RunningEvent(BaseModel):
    state: Literal["running"] = "running"


class ProgressEvent(BaseModel):
    step: int
    total: int
    percent: float
    eta_s: float | None


class PreviewEvent(BaseModel):
    step: int
    total: int
    image: str = Field(description="data:image/jpeg;base64,... of the step's predicted clean middle frame (ERP).")
    width: int
    height: int


class FinalEvent(BaseModel):
    """`succeeded`, `failed` and `canceled`: the job as GET /jobs/{id} shows it, with its links."""

    job: Job | None
    error: str | None = None
    error_type: ErrorType | None = None


EVENT_MODELS: dict[str, type[BaseModel]] = {
    "queued": QueuedEvent,
    "running": RunningEvent,
    "progress": ProgressEvent,
    "preview": PreviewEvent,
    "succeeded": FinalEvent,
    "failed": FinalEvent,
    "canceled": FinalEvent,
}
