"""The job record stored in Redis (one JSON document per job), typed and versioned. Every process reads and writes
records through `JobRecord`; a record written by an earlier release is migrated when read (`_migrate`), so an
upgrade never strands a queued or finished job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.request import FlowKind, GenerationRequest

RECORD_VERSION = 2
JobState = Literal["queued", "running", "succeeded", "failed", "canceled"]
TERMINAL: tuple[JobState, ...] = ("succeeded", "failed", "canceled")
ErrorType = Literal["input", "timeout", "out_of_memory", "storage", "internal", "canceled", "deadline"]
OutputName = Literal["video", "poster", "views"]


class Progress(BaseModel):
    step: int = 0
    total: int = 0
    percent: float = 0.0


class FlowRef(BaseModel):
    """The motion upload a job reads (stored where every worker reaches it)."""

    id: str
    key: str
    kind: FlowKind


class WebhookStatus(BaseModel):
    """The last webhook delivery attempt."""

    event: str
    attempts: int
    status_code: int | None = None
    error: str | None = None


class QualityFigures(BaseModel):
    """Figures measured on the finished video's frames as they were encoded; about 1 means the flaw looked for does
    not show (docs/quality-figures.md says what each compares and what to expect)."""

    seam_ratio: float | None = Field(
        None, description="The left-right seam against the boundaries on the 8-pixel grid."
    )
    window_seam_ratio: float | None = Field(
        None, description="Steps into frames where temporal context windows meet against the others (long videos)."
    )
    spatial_window_seam_ratio: float | None = Field(
        None, description="Steps across spatial window borders against the lines beside them (above native size)."
    )
    loop_closure: float | None = Field(
        None, description="The last frame to the first against the median step (loops only)."
    )
    end_continuity: float | None = Field(None, description="Mean |last column - first column|, pixels in [0, 1].")


class Timings(BaseModel):
    """Seconds spent by the worker: the whole prediction and the mean denoising step."""

    pipeline_s: float | None = None
    step_s: float | None = None


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[2]  # written by every release since 0.2; a record without it is 0.1's (`_migrate`)
    id: str
    owner: str
    state: JobState = "queued"
    request: GenerationRequest  # resolved: every model default filled in
    flow: FlowRef | None = None
    progress: Progress = Field(default_factory=Progress)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_type: ErrorType | None = None
    seed: int | None = None
    outputs: dict[OutputName, str] = Field(default_factory=dict)  # storage keys
    deliveries: int = 0
    webhook: WebhookStatus | None = None
    timings: Timings = Field(default_factory=Timings)
    quality_figures: QualityFigures | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        return _from_v1(data) if isinstance(data, dict) and "version" not in data else data


def _from_v1(record: dict[str, Any]) -> dict[str, Any]:
    """Release 0.1.0's record (no `version`): the motion upload's id, key and kind sat inside the request, the views
    picture was the output `preview`, and `pipeline_s` sat at the top."""
    record = dict(record)
    request = dict(record["request"])
    flow = {name: request.pop(f"flow_{name}", None) for name in ("id", "key", "kind")}
    record["request"] = request
    if flow["key"]:
        record["flow"] = flow
        request["flow_id"] = flow["id"]
    outputs = dict(record.get("outputs") or {})
    if "preview" in outputs:
        outputs["views"] = outputs.pop("preview")
    record["outputs"] = outputs
    record["timings"] = {"pipeline_s": record.pop("pipeline_s", None)}
    return {**record, "version": RECORD_VERSION}
