"""The generation task: one job from queued to succeeded, failed or canceled, reporting every step. Every way a
job can end is a final state with an `error_type` (worker/failures.py); while it runs it holds a lease
(worker/lease.py) the reaper watches."""

from __future__ import annotations

import logging
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import redis
from billiard.exceptions import SoftTimeLimitExceeded

from worker.celery_app import app
from worker.deadlines import cancel_fields, deadline_passed
from worker.events import eta_s
from worker.failures import JobFailure, classify
from worker.jobs import MAX_DELIVERIES, REPEATED_CRASH, TERMINAL, JobStore
from worker.lease import JobLease, LeaseLost
from worker.live_preview import preview_publisher
from worker.settings import get_settings
from worker.storage import make_storage, output_key
from worker.test_faults import raise_test_fault

log = logging.getLogger(__name__)
UPLOAD_GONE = "the motion upload is no longer stored (it expired or was deleted); upload it again"


@lru_cache
def _runtime():
    from models.registry import load_registry
    from worker.pipeline_cache import PipelineCache, PipelineOptions

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    cache = PipelineCache(
        load_registry(settings.model_registry),
        settings.device,
        settings.pipeline_cache_gb,
        PipelineOptions.from_settings(settings),
    )
    return JobStore(client, settings.job_ttl_s), cache, make_storage(settings), settings


@lru_cache
def flow_backend():
    """How this worker measures the motion of uploaded panorama clips (settings flow_backend, raft_weights)."""
    from models.media.flow_extract import FlowBackend

    settings = get_settings()
    return FlowBackend(settings.flow_backend, settings.raft_weights, settings.device)


def warm_up(names: list[str]) -> None:
    """Load the named pipelines, and RAFT when it measures flow, before the first job (a bad file fails here)."""
    _, cache, _, settings = _runtime()
    time.sleep(settings.test_warmup_delay_s)  # TEST HOOK (0 unless set): a slow-loading model
    for name in names:
        cache.get(name)
    if flow_backend().name == "raft":
        flow_backend().raft()


def _store_outputs(storage, job_id: str, files: dict[str, Path], retries: int) -> None:
    """Upload with backoff (1, 2, 4, ... s): a storage outage shorter than that costs no finished video."""
    for attempt in range(retries + 1):
        try:
            for name, path in files.items():
                storage.put(output_key(job_id, name), path)
            return
        except SoftTimeLimitExceeded:
            raise  # the job's time is up: a timeout, not a storage failure
        except Exception as exc:  # boto3/botocore raise many unrelated types; every one means "not stored"
            log.warning("job %s: storing results failed (attempt %d): %s", job_id, attempt + 1, exc)
            if attempt == retries:
                raise JobFailure(
                    "storage", f"the result could not be stored ({type(exc).__name__}); retry later"
                ) from exc
            time.sleep(2**attempt)


def _fetch_upload(storage, key: str, target: Path) -> None:
    """The job's motion upload from storage; gone (expired, deleted) is the user's to fix: error_type input."""
    try:
        storage.get(key, target)
    except FileNotFoundError:
        raise JobFailure("input", UPLOAD_GONE) from None
    except Exception as exc:  # botocore: a 404 is a missing upload, anything else the storage failing
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise JobFailure("input", UPLOAD_GONE) from None
        raise


@app.task(name="dvd360.generate")
def generate(job_id: str) -> None:
    from models.enhancements import Enhancements
    from models.errors import GenerationCanceled
    from models.media.flow_video import load_flow_condition
    from models.media.interpolate import interpolate_frames
    from models.media.previews import write_poster, write_preview
    from models.media.video_writer import write_video

    store, cache, storage, settings = _runtime()
    job = store.get(job_id)
    if job is None or job["state"] in TERMINAL:
        return  # expired, or finished before a redelivery
    if store.cancel_requested(job_id) or deadline_passed(job):
        store.transition(app, job_id, "canceled", **cancel_fields(job))
        return
    deliveries = job["deliveries"] + 1
    if deliveries > MAX_DELIVERIES:
        store.transition(app, job_id, "failed", error_type="internal", error=REPEATED_CRASH)
        return
    lease = JobLease(store.redis, job_id, settings.job_lease_s)
    if not lease.acquire():  # taken before "running" is written: the reaper never sees running without a lease
        log.info("job %s: another worker holds its lease; this delivery is dropped", job_id)
        return
    r = job["request"]
    loop = r.get("loop", False)  # records queued before long videos existed have no `loop`
    try:
        store.transition(app, job_id, "running", started_at=time.time(), deliveries=deliveries)
        if settings.test_fault_hooks:
            raise_test_fault(r["prompt"])
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            pipe = cache.get(r["base_model"])
            flow = None
            if r.get("flow_key"):
                local = Path(tmp) / Path(r["flow_key"]).name
                _fetch_upload(storage, r["flow_key"], local)
                flow = load_flow_condition(
                    local, r["flow_kind"], r["num_frames"], r["height"], r["width"], flow_backend(), loop
                )
                if r["flow_kind"] == "panorama_clip":
                    log.info("job %s: the clip's motion was measured with %s", job_id, flow_backend().name)

            def progress(step: int, total: int) -> None:
                lease.refresh()
                store.report_progress(app, job_id, step, total, eta_s(time.perf_counter() - denoising, step, total))

            denoising = time.perf_counter()

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
                should_cancel=lambda: store.cancel_requested(job_id) or deadline_passed(job),
                preview=preview_publisher(store, job_id, settings.preview_every),
                loop=loop,
            )
            chunks = video.chunks()  # decoded while encoding
            if rate := r.get("interpolate_to"):
                chunks = interpolate_frames(chunks, r["num_frames"], r["fps"], rate, loop)
            files = {
                # frames are decoded while encoding; the pictures reuse the middle frame kept on the way
                "video.mp4": write_video(chunks, Path(tmp) / "video.mp4", fps=r.get("interpolate_to") or r["fps"]),
                "poster.jpg": write_poster(video.middle_frame(), Path(tmp) / "poster.jpg"),
                "preview.jpg": write_preview(video.middle_frame(), Path(tmp) / "preview.jpg"),
            }
            pipeline_s = time.perf_counter() - started
            _store_outputs(storage, job_id, files, settings.storage_retries)
        outputs = {name.split(".")[0]: output_key(job_id, name) for name in files}
        store.transition(app, job_id, "succeeded", seed=video.seed, outputs=outputs, pipeline_s=round(pipeline_s, 3))
    except GenerationCanceled:
        store.transition(app, job_id, "canceled", **cancel_fields(job))
    except LeaseLost:
        log.warning("job %s: its lease was taken by another delivery; this one stops without writing", job_id)
    except Exception as exc:  # every other ending: a stable error_type and a safe message; the stack goes to the log
        error_type, message = classify(exc, settings.task_soft_time_limit_s)
        log.log(logging.ERROR if error_type == "internal" else logging.WARNING, "job %s failed (%s): %s",
                job_id, error_type, message, exc_info=error_type == "internal")  # fmt: skip
        store.transition(app, job_id, "failed", error_type=error_type, error=message)
    finally:
        lease.release()
