"""TEST HOOK, off in every deployment: with DVD360_TEST_FAULT_HOOKS=1 a job whose prompt is `raise:<name>` raises
that exception once it is running, so the tests can show each exception type ending the job with the
right error_type. Only exceptions that cannot be provoked for real on a CPU test machine are listed (a CUDA
out-of-memory, an S3 error response, an ffmpeg failure, an unforeseen bug); timeouts, full disks, vanished
uploads and killed workers are injected for real by the tests."""

from __future__ import annotations

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


def raise_test_fault(prompt: str) -> None:
    if prompt.startswith(PREFIX) and (make := FAULTS.get(prompt[len(PREFIX) :])):
        raise make()
