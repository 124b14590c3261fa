"""Why a job failed, as a stable `error_type` and a message safe to show its owner (no stack trace, no secrets):
every exception a job can raise maps to one of them; anything unforeseen is `internal` (the stack goes to the log).

Torch-free at import: the torch and av types are looked up only when present, so the reaper and tests import it."""

from __future__ import annotations

import errno
import sys

from core.records import ErrorType

INTERNAL_MESSAGE = "the job failed because of an internal error (logged for the operator); submit it again"


class JobFailure(Exception):
    """A failure the task already classified (a vanished upload, storage that stayed down, a timeout)."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type, self.message = error_type, message


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only a worker that loaded torch can have raised its errors
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def _is_storage_client_error(exc: BaseException) -> bool:
    botocore = sys.modules.get("botocore.exceptions")
    return botocore is not None and isinstance(exc, botocore.BotoCoreError | botocore.ClientError)


def _is_media_error(exc: BaseException) -> bool:
    av = sys.modules.get("av.error")
    return av is not None and isinstance(exc, av.FFmpegError)


def classify(exc: BaseException, time_limit_s: int | None = None) -> tuple[ErrorType, str]:
    """(error_type, message) for an exception that ended a job (cancellation is handled before this)."""
    from billiard.exceptions import SoftTimeLimitExceeded

    from models.errors import CheckpointError
    from models.media.errors import FlowInputError

    if isinstance(exc, JobFailure):
        return exc.error_type, exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = f" of {time_limit_s} s" if time_limit_s else ""
        return "timeout", f"the job ran past the worker's time limit{limit}; ask for fewer frames, pixels or steps"
    if _is_out_of_memory(exc):
        return "out_of_memory", "the worker ran out of memory; ask for fewer frames or a smaller size"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "storage", "the worker's disk is full; retry later"
    if _is_storage_client_error(exc):
        return "storage", f"the storage service failed ({type(exc).__name__}); retry later"
    if isinstance(exc, CheckpointError):
        return "internal", f"the model could not be loaded: {exc}"
    if _is_media_error(exc):
        return "internal", "encoding or decoding the video failed (ffmpeg); submit it again"
    if isinstance(exc, FlowInputError | ValueError):  # the pipeline's and readers' checks of what was asked
        return "input", str(exc)[:500]
    return "internal", INTERNAL_MESSAGE
