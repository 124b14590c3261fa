"""The Celery application: Redis broker, late acks (a killed worker's job is redelivered), one job at a time."""

from __future__ import annotations

from celery import Celery, signals

from worker.heartbeat import start_heartbeat
from worker.settings import get_settings

settings = get_settings()
app = Celery("dvd360", broker=settings.redis_url, include=["worker.tasks", "worker.webhooks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,  # job state lives in our own Redis records
    task_soft_time_limit=1800,
    task_time_limit=1900,
    broker_connection_retry_on_startup=True,
    # The visibility timeout must exceed the longest job, or a late-acked job still running is delivered twice.
    # kombu sweeps for jobs of dead workers every interval x throttle (about 100 s by default).
    broker_transport_options={
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": settings.restore_interval_s,
        "unacked_restore_throttle": 1,
    },
)


@signals.worker_init.connect
def _heartbeat(**_) -> None:
    if settings.heartbeat_file is not None:
        start_heartbeat(settings.heartbeat_file)


@signals.worker_process_init.connect
def _warm(**_) -> None:
    # in the pool child, never the parent: CUDA cannot be used in a forked child the parent initialised
    from worker.tasks import warm_up

    warm_up([m for m in settings.warm_models.split(",") if m])
