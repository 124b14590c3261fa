"""The Celery application: Redis broker, late acks (a killed worker's job is redelivered), one job at a time."""

from __future__ import annotations

from celery import Celery, signals

from core.settings import get_settings
from worker.heartbeat import Heartbeat
from worker.runtime import warm_up

settings = get_settings()
app = Celery("dvd360", broker=settings.redis_url, include=["worker.tasks", "worker.webhooks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,  # job state lives in our own Redis records
    # past the soft limit the job fails with error_type timeout; the hard limit kills a child that ignores it
    task_soft_time_limit=settings.task_soft_time_limit_s,
    task_time_limit=settings.task_soft_time_limit_s + 60,
    # a replacement pool child loads its models before it reports up: Celery's default 4 s would kill it in a loop
    worker_proc_alive_timeout=settings.worker_proc_alive_timeout_s,
    broker_connection_retry_on_startup=True,
    # The visibility timeout must exceed the longest job, or a late-acked job still running is delivered twice.
    # kombu sweeps for jobs of dead workers every interval x throttle (about 100 s by default).
    broker_transport_options={
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": settings.restore_interval_s,
        "unacked_restore_throttle": 1,
    },
)


def _runs_jobs_in_children(pool_cls) -> bool:
    module = pool_cls if isinstance(pool_cls, str) else pool_cls.__module__
    return "prefork" in module or "solo" in module  # pools that send worker_process_init where jobs run


@signals.worker_init.connect
def _heartbeat(sender, **_) -> None:
    # threads (the webhook deliverer): the parent runs the jobs, so it beats; prefork: each child does (below)
    if settings.heartbeat_file is not None and not _runs_jobs_in_children(sender.pool_cls):
        Heartbeat(settings.heartbeat_file, "ready")


@signals.worker_process_init.connect
def _warm(**_) -> None:
    # in the pool child, never the parent: CUDA cannot be used in a forked child the parent initialised
    beat = Heartbeat(settings.heartbeat_file, "warming") if settings.heartbeat_file is not None else None
    warm_up([m for m in settings.warm_models.split(",") if m])
    if beat is not None:
        beat.set("ready")
