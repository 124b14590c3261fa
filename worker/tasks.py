"""The generation task: one job from queued to succeeded, failed or canceled, reporting every step."""

from __future__ import annotations

import logging
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import redis

from worker.celery_app import app
from worker.jobs import JobStore
from worker.settings import get_settings
from worker.storage import make_storage, output_key

log = logging.getLogger(__name__)
MAX_DELIVERIES = 3  # a job that kills its worker this often fails instead of looping forever


@lru_cache
def _runtime():
    from models.registry import load_registry
    from worker.pipeline_cache import PipelineCache

    settings = get_settings()
    store = JobStore(redis.Redis.from_url(settings.redis_url), settings.job_ttl_s)
    cache = PipelineCache(load_registry(settings.model_registry), settings.device)
    return store, cache, make_storage(settings)


def warm_pipelines(names: list[str]) -> None:
    _, cache, _ = _runtime()
    for name in names:
        cache.get(name)


@app.task(name="dvd360.generate")
def generate(job_id: str) -> None:
    from models.enhancements import Enhancements
    from models.errors import CheckpointError, GenerationCanceled
    from models.media.errors import FlowInputError
    from models.media.flow_video import load_flow_condition
    from models.media.previews import write_poster, write_preview
    from models.media.video_writer import write_video

    store, cache, storage = _runtime()
    job = store.get(job_id)
    if job is None or job["state"] in ("succeeded", "failed", "canceled"):
        return  # expired, or finished before a redelivery
    if store.cancel_requested(job_id):
        store.update(job_id, state="canceled", finished_at=time.time())
        return
    deliveries = job["deliveries"] + 1
    if deliveries > MAX_DELIVERIES:
        store.update(job_id, state="failed", error="the job stopped its worker repeatedly", finished_at=time.time())
        return
    store.update(job_id, state="running", started_at=time.time(), deliveries=deliveries)
    r = job["request"]
    try:
        pipe = cache.get(r["base_model"])
        flow = None
        if r.get("flow_path"):
            flow = load_flow_condition(Path(r["flow_path"]), r["flow_kind"], r["num_frames"], r["height"], r["width"])

        def progress(step: int, total: int) -> None:
            store.update(job_id, progress={"step": step, "total": total, "percent": round(100 * step / total, 1)})

        video = pipe(
            r["prompt"],
            negative_prompt=r["negative_prompt"],
            flow=flow,
            num_frames=r["num_frames"],
            height=r["height"],
            width=r["width"],
            num_inference_steps=r["steps"],
            guidance_scale=r["guidance_scale"],
            seed=r.get("seed"),
            adapter_scale=r["adapter_scale"],
            enhancements=Enhancements(r["latent_rotation"], r["rotate_features"], r["circular_padding"]),
            progress=progress,
            should_cancel=lambda: store.cancel_requested(job_id),
        )
        with tempfile.TemporaryDirectory() as tmp:
            files = {
                "video.mp4": write_video(video.frames, Path(tmp) / "video.mp4", fps=r["fps"]),
                "poster.jpg": write_poster(video.frames, Path(tmp) / "poster.jpg"),
                "preview.jpg": write_preview(video.frames, Path(tmp) / "preview.jpg"),
            }
            for name, path in files.items():
                storage.put(output_key(job_id, name), path)
        outputs = {name.split(".")[0]: output_key(job_id, name) for name in files}
        store.update(job_id, state="succeeded", seed=video.seed, outputs=outputs, finished_at=time.time())
    except GenerationCanceled:
        store.update(job_id, state="canceled", finished_at=time.time())
    except (CheckpointError, FlowInputError, ValueError) as exc:
        store.update(job_id, state="failed", error=str(exc), finished_at=time.time())
