"""Every setting of the API and worker processes, from the environment (prefix DVD360_); one object per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    model_registry: Path | None = Field(None, description="Model registry YAML; the tiny model when unset.")
    auth: bool = Field(True, description="Require API keys; off only in the embedded default.")
    signing_key: str = Field("", description="HMAC key for local download links (random per start if empty).")
    max_upload_mb: int = Field(200, description="Largest accepted motion upload.")
    max_height: int = Field(512, description="Largest output height (width is 2x).")
    job_ttl_s: int = Field(7 * 24 * 3600, description="How long job records are kept.")
    url_expiry_s: int = Field(3600, description="Lifetime of download links.")
    warm_models: str = Field("", description="Comma-separated base models a worker loads at start.")
    heartbeat_file: Path | None = Field(None, description="File the worker touches while alive (liveness probe).")
    cors_origins: str = Field("", description="Comma-separated origins allowed to call the API from browsers.")
    device: str | None = Field(None, description="Torch device for the worker (default: CUDA when present).")
    rate_limit: str = Field("120/minute", description="Requests per API key (a `limits` string, e.g. 10/second).")
    max_active_jobs: int = Field(8, ge=1, description="Queued plus running jobs one API key may have.")
    idempotency_ttl_s: int = Field(24 * 3600, description="How long an Idempotency-Key keeps answering its job.")
    webhook_allow_private: bool = Field(False, description="Allow webhooks to loopback/private addresses.")
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

    @field_validator("raft_weights", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # compose passes unset variables as empty strings

    @model_validator(mode="after")
    def _raft_has_weights(self) -> Settings:
        if self.flow_backend == "raft" and self.raft_weights is None:
            raise ValueError("DVD360_FLOW_BACKEND=raft needs DVD360_RAFT_WEIGHTS (a local RAFT weights file)")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
