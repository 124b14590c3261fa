"""The generation task: one job's lifecycle from queued to succeeded, failed or canceled, around one prediction
(worker/predictor.py). Every way a job can end is a final state with an `error_type` (worker/failures.py); while it
runs it holds a lease (worker/lease.py) the reaper watches; every step is an event; outputs go to storage."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from billiard.exceptions import SoftTimeLimitExceeded

from core.deadlines import cancel_fields, deadline_passed
from core.events import eta_s
from core.jobs import MAX_DELIVERIES, REPEATED_CRASH
from core.records import JobRecord
from core.storage import output_key
from worker.celery_app import app
from worker.failures import JobFailure, classify
from worker.lease import JobLease, LeaseLost
from worker.live_preview import preview_publisher
from worker.predictor import Motion, PredictionHooks
from worker.runtime import Runtime, runtime

log = logging.getLogger(__name__)
UPLOAD_GONE = "the motion upload is no longer stored (it expired or was deleted); upload it again"
OUTPUT_FILES = {"video": "video.mp4", "poster": "poster.jpg", "views": "views.jpg"}


def _store_outputs(rt: Runtime, job_id: str, files: dict[str, Path]) -> dict[str, str]:
    """Upload with backoff (1, 2, 4, ... s): a storage outage shorter than that costs no finished video. Returns
    each output's storage key."""
    keys = {name: output_key(job_id, path.name) for name, path in files.items()}
    retries = rt.settings.storage_retries
    for attempt in range(retries + 1):
        try:
            for name, path in files.items():
                rt.storage.put(keys[name], path)
            return keys
        except SoftTimeLimitExceeded:
            raise  # the job's time is up: a timeout, not a storage failure
        except Exception as exc:  # boto3/botocore raise many unrelated types; every one means "not stored"
            log.warning("job %s: storing results failed (attempt %d): %s", job_id, attempt + 1, exc)
            if attempt == retries:
                raise JobFailure(
                    "storage", f"the result could not be stored ({type(exc).__name__}); retry later"
                ) from exc
            time.sleep(2**attempt)


def _fetch_upload(rt: Runtime, key: str, target: Path) -> None:
    """The job's motion upload from storage; gone (expired, deleted) is the user's to fix: error_type input."""
    try:
        rt.storage.get(key, target)
    except FileNotFoundError:
        raise JobFailure("input", UPLOAD_GONE) from None
    except Exception as exc:  # botocore: a 404 is a missing upload, anything else the storage failing
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise JobFailure("input", UPLOAD_GONE) from None
        raise


def _hooks(rt: Runtime, job: JobRecord, lease: JobLease) -> PredictionHooks:
    store = rt.store

    def progress(step: int, total: int, elapsed_s: float) -> None:
        lease.refresh()
        store.report_progress(job.id, step, total, eta_s(elapsed_s, step, total))

    return PredictionHooks(
        progress=progress,
        should_cancel=lambda: store.cancel_requested(job.id) or deadline_passed(job),
        preview=preview_publisher(store, job.id, rt.settings.preview_every),
    )


@app.task(name="dvd360.generate")
def generate(job_id: str) -> None:
    from models.errors import GenerationCanceled

    rt = runtime()
    store = rt.store
    job = store.get(job_id)
    if job is None or job.finished:
        return  # expired, or finished before a redelivery
    if store.cancel_requested(job_id) or deadline_passed(job):
        store.transition(job_id, "canceled", **cancel_fields(job))
        return
    deliveries = job.deliveries + 1
    if deliveries > MAX_DELIVERIES:
        store.transition(job_id, "failed", error_type="internal", error=REPEATED_CRASH)
        return
    lease = JobLease(store.redis, job_id, rt.settings.job_lease_s)
    if not lease.acquire():  # taken before "running" is written: the reaper never sees running without a lease
        log.info("job %s: another worker holds its lease; this delivery is dropped", job_id)
        return
    try:
        store.transition(job_id, "running", started_at=time.time(), deliveries=deliveries)
        with tempfile.TemporaryDirectory() as tmp:
            generator = rt.models.get(job.request.base_model)
            motion = None
            if job.flow is not None:
                motion = Motion(Path(tmp) / Path(job.flow.key).name, job.flow.kind)
                _fetch_upload(rt, job.flow.key, motion.path)
            files = {name: Path(tmp) / filename for name, filename in OUTPUT_FILES.items()}
            prediction = generator.predict(job.request, files, motion, _hooks(rt, job, lease))
            if motion is not None and motion.kind == "panorama_clip":
                log.info("job %s: the clip's motion was measured with %s", job_id, generator.flow_backend.name)
            outputs = _store_outputs(rt, job_id, prediction.files)
        store.transition(
            job_id, "succeeded", seed=prediction.seed, outputs=outputs, timings=prediction.timings,
            quality_figures=prediction.quality_figures,
        )  # fmt: skip
    except GenerationCanceled:
        store.transition(job_id, "canceled", **cancel_fields(job))
    except LeaseLost:
        log.warning("job %s: its lease was taken by another delivery; this one stops without writing", job_id)
    except Exception as exc:  # every other ending: a stable error_type and a safe message; the stack goes to the log
        error_type, message = classify(exc, rt.settings.task_soft_time_limit_s)
        log.log(logging.ERROR if error_type == "internal" else logging.WARNING, "job %s failed (%s): %s",
                job_id, error_type, message, exc_info=error_type == "internal")  # fmt: skip
        store.transition(job_id, "failed", error_type=error_type, error=message)
    finally:
        lease.release()
