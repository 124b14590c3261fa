"""Every setting of the API and worker processes, from the environment (prefix DVD360_); one object per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.registry import default_models_dir, default_registry_path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DVD360_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the queue and the job records.")
    storage: Literal["local", "s3"] = Field("local", description="Where results go: a local folder or S3.")
    data_dir: Path = Field(Path("dvd360-data"), description="Local storage and uploads (embedded default).")
    s3_endpoint_url: str | None = Field(None, description="S3/MinIO endpoint the processes reach.")
    s3_public_endpoint_url: str | None = Field(None, description="Endpoint in presigned URLs (what clients reach).")
    s3_bucket: str = Field("dvd360", description="Bucket for results and uploads.")
    s3_access_key: str | None = Field(None, description="S3 access key (else the standard AWS variables).")
    s3_secret_key: str | None = Field(None, description="S3 secret key.")
    s3_region: str = Field("us-east-1", description="Region for SigV4 signing.")
    model_registry: Path | None = Field(
        None, description="Model registry YAML; unset: the one `dvd360 models pull` wrote in models_dir, else tiny."
    )
    models_dir: Path = Field(
        default_factory=default_models_dir, description="Where `dvd360 models pull` installs weights."
    )
    pull_models: str = Field("", description="Comma-separated catalogue models a worker pulls at start.")
    catalogue: Path | None = Field(None, description="Model catalogue YAML for pull (default: the shipped one).")
    pull_retries: int = Field(5, ge=0, description="Retries of a failed download (5xx, dropped connection).")
    pull_backoff_s: float = Field(1.0, ge=0, description="First retry delay of a download; doubles each time.")
    auth: bool = Field(True, description="Require API keys; off only in the embedded default.")
    signing_key: str = Field(
        "", description="HMAC key for download links and webhooks (empty: generated once, kept in Redis)."
    )
    max_upload_mb: int = Field(200, description="Largest accepted motion upload.")
    max_height: int = Field(
        2048, description="Largest output height on any model (width is 2x); each model's own limit applies too."
    )
    job_ttl_s: int = Field(7 * 24 * 3600, description="How long job records are kept.")
    url_expiry_s: int = Field(3600, description="Lifetime of download links.")
    warm_models: str = Field("", description="Comma-separated base models a worker loads at start.")
    heartbeat_file: Path | None = Field(None, description="File the worker touches while alive (liveness probe).")
    cors_origins: str = Field("", description="Comma-separated origins allowed to call the API from browsers.")
    device: str | None = Field(None, description="Torch device for the worker (default: CUDA when present).")
    decode_chunk_size: int | None = Field(
        None, ge=1, description="Frames the VAE decodes at once (default: measured per device type, 1 on CPU)."
    )
    cpu_offload: bool = Field(
        False,
        description="Low VRAM: models wait in CPU memory and each moves to the GPU for its stage (slower per job).",
    )
    vae_tile: int | None = Field(
        None,
        ge=1,
        description="Decode in width-circular tiles of this many latent pixels (8 px each; 64 = 512 px); unset: whole.",
    )
    vae_tile_overlap: int = Field(16, ge=1, description="Latent pixels by which VAE tiles overlap and blend.")
    compile: Literal["off", "inductor", "eager"] = Field(
        "off",
        description="torch.compile backend for the UNet and VAE decoder, for long-lived GPU workers (the first job "
        "of each shape compiles; combines with cpu_offload); eager: dynamo only, to check graphs.",
    )
    compile_cache_dir: Path | None = Field(
        None,
        description="Folder for torch.compile's caches (inductor, FX graph, AOTAutograd), on a volume so a restarted "
        "worker loads its compiled graphs instead of compiling them again (unset: torch's default in /tmp).",
    )
    rate_limit: str = Field(
        "120/minute", description="Submissions (POST/DELETE) per API key (a `limits` string, e.g. 10/second)."
    )
    read_rate_limit: str = Field(
        "1200/minute", description="Reads (GET: polling one's own jobs, event streams) per API key."
    )
    auth_failure_limit: str = Field(
        "30/minute", description="Failed authentications per client address before 429 (guessing keys)."
    )
    public_url: str | None = Field(
        None, description="Base URL clients reach the API at, for absolute output links (default: the request's)."
    )
    metrics_token: str = Field("", description="When set, GET /metrics needs `Authorization: Bearer <token>`.")
    max_active_jobs: int = Field(8, ge=1, description="Queued plus running jobs one API key may have.")
    idempotency_ttl_s: int = Field(24 * 3600, description="How long an Idempotency-Key keeps answering its job.")
    max_streams_per_key: int = Field(
        32, ge=1, description="Event streams (and Prefer: wait requests) one API key may hold open at once."
    )
    key_recheck_s: float = Field(
        5, gt=0, description="How often open event streams and waits check that their API key is still valid."
    )
    webhook_allow_private: bool = Field(False, description="Allow webhooks to loopback/private addresses.")
    preview_every: int = Field(
        2, ge=0, description="A live preview frame (job events) every N denoising steps; 0: no previews."
    )
    pipeline_cache_gb: float = Field(0, ge=0, description="Weights kept loaded per worker (0: one model at a time).")
    visibility_timeout_s: int = Field(
        2400, ge=1, description="Redelivery delay of a dead worker's job; must exceed the longest job."
    )
    restore_interval_s: float = Field(10, gt=0, description="How often workers look for dead workers' jobs.")
    storage_retries: int = Field(4, ge=0, description="Retries (with backoff) of a failed result upload.")
    flow_backend: Literal["dis", "farneback", "raft"] = Field(
        "dis", description="How workers measure a panorama clip's motion: dis (CPU, no weights), farneback or raft."
    )
    raft_weights: Path | None = Field(
        None, description="Local torchvision RAFT weights (raft_large_C_T_SKHT_V2-ff5fadd5.pth) for flow_backend=raft."
    )

    # Every job ends, files expire (issue 14): time limits, leases, the reaper, retention, cost estimates.
    task_soft_time_limit_s: int = Field(1800, ge=1, description="A job running longer fails (error_type timeout).")
    job_lease_s: float = Field(60, gt=0, description="Lease a worker refreshes while it runs a job; lapsed: reaped.")
    reaper_interval_s: float = Field(15, gt=0, description="How often the reaper checks unfinished jobs and expiries.")
    deadline_poll_s: float = Field(0.5, gt=0, description="How often the reaper looks for jobs past their deadline.")
    queued_grace_s: float = Field(120, gt=0, description="A queued job with no broker message this long is failed.")
    result_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="How long a finished job and its outputs are kept.")
    upload_ttl_s: int = Field(24 * 3600, ge=1, description="How long a motion upload is kept.")
    worker_proc_alive_timeout_s: float = Field(
        1800, gt=0, description="How long a new worker child may take to load its models before Celery kills it."
    )
    worker_warmup_budget_s: float = Field(
        1800, gt=0, description="Liveness: how long a worker may report 'warming' before it counts as stuck."
    )
    cost_s_per_unit: float | None = Field(
        None, gt=0, description="Seconds per frame x pixel x step on the workers' device (default: core/cost.py)."
    )

    @field_validator("raft_weights", "model_registry", "catalogue", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # compose passes unset variables as empty strings

    @model_validator(mode="after")
    def _raft_has_weights(self) -> Settings:
        if self.flow_backend == "raft" and self.raft_weights is None:
            raise ValueError("DVD360_FLOW_BACKEND=raft needs DVD360_RAFT_WEIGHTS (a local RAFT weights file)")
        return self

    @model_validator(mode="after")
    def _vae_tiles_advance(self) -> Settings:
        if self.vae_tile is not None and self.vae_tile_overlap >= self.vae_tile:
            raise ValueError(
                f"DVD360_VAE_TILE_OVERLAP ({self.vae_tile_overlap}) must be smaller than DVD360_VAE_TILE "
                f"({self.vae_tile}): lower the overlap or raise the tile"
            )
        return self

    @model_validator(mode="after")
    def _pulled_models_by_default(self) -> Settings:
        if self.model_registry is None:  # what `dvd360 models pull` installed is served without further flags
            self.model_registry = default_registry_path(self.models_dir)
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
