"""The worker with the tests' fault hooks: a Celery app module the tests start instead of `worker.celery_app`
(`celery -A tests.fault_worker worker ...`: tests/processes.py `start_worker(fault_hooks=True)`). Nothing here
ships: the worker image has no test hook at all.

- A job whose prompt is `raise:<name>` raises that exception inside the prediction, so the tests can show each
  exception type ending the job with the right error_type. Only exceptions that cannot be provoked for real on a
  CPU test machine are listed (a CUDA out-of-memory, an S3 error response, an ffmpeg failure, an unforeseen bug);
  timeouts, full disks, vanished uploads and killed workers are injected for real by the tests.
- DVD360_TEST_WARMUP_DELAY_S makes each pool child's warm-up that many seconds slower (a slow-loading model)."""

from __future__ import annotations

import os
import time

import worker.predictor
import worker.runtime

PREFIX = "raise:"


def _torch_oom() -> BaseException:
    import torch

    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def _client_error() -> BaseException:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "GetObject")


def _ffmpeg_error() -> BaseException:
    import av.error

    return av.error.InvalidDataError(1094995529, "Invalid data found when processing input")


FAULTS = {
    "torch.OutOfMemoryError": _torch_oom,
    "RuntimeError-oom": lambda: RuntimeError("CUDA error: out of memory"),
    "MemoryError": MemoryError,
    "ClientError": _client_error,
    "FFmpegError": _ffmpeg_error,
    "KeyError": lambda: KeyError("internal detail: /secret/path token=abc123"),
}
_predict = worker.predictor.Generator.predict
_warm_up = worker.runtime.warm_up


def _faulty_predict(self, request, *args, **kwargs):
    if request.prompt.startswith(PREFIX) and (make := FAULTS.get(request.prompt[len(PREFIX) :])):
        raise make()
    return _predict(self, request, *args, **kwargs)


def _slow_warm_up(names: list[str]) -> None:
    time.sleep(float(os.environ.get("DVD360_TEST_WARMUP_DELAY_S", "0")))
    _warm_up(names)


worker.predictor.Generator.predict = _faulty_predict
worker.runtime.warm_up = _slow_warm_up  # before worker.celery_app takes its name below

from worker.celery_app import app  # noqa: E402  (after the hooks are in place)

__all__ = ["FAULTS", "app"]
