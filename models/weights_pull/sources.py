"""Fetching one file into a staging folder: from the Hugging Face Hub (huggingface_hub, so HF_ENDPOINT, HF_HOME
and tokens apply) or a plain HTTPS URL (Range resume across runs, redirects, retries with backoff). A full disk
stops at once with nothing partial left; other failures move on to the file's next source."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from models.weights_pull.catalogue import CatalogueFile, Component
from models.weights_pull.errors import PullError

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
CHUNK = 1 << 20
PARTIAL = ".partial"  # suffix of a plain-URL download in progress (kept between runs to resume)
# The most a file without a `size` in the catalogue may be (the largest published single-file SD-1.5 models are
# 2-7 GB); a server never fills the disk with an endless body. A larger file needs its size in the catalogue.
UNDECLARED_MAX_BYTES = 8 * 2**30


class DiskFull(PullError):
    """No space left: retrying or trying another source cannot help."""


class TooLarge(PullError):
    """The body runs past the catalogue's size (or the cap for files without one): this source is not the file."""

    def __init__(self, limit: int, declared: bool) -> None:
        what = "the catalogue's size" if declared else "the cap for a file without a size in the catalogue"
        super().__init__(f"the server sends more than {what}, {limit} bytes; stopped there, nothing kept")


@dataclass(frozen=True)
class SizeLimit:
    """What one file may be: its declared size, else the cap."""

    bytes: int
    declared: bool

    @classmethod
    def of(cls, file: CatalogueFile, cap: int = UNDECLARED_MAX_BYTES) -> SizeLimit:
        return cls(file.size, True) if file.size is not None else cls(cap, False)

    def check(self, total: int) -> None:
        if total > self.bytes:
            raise TooLarge(self.bytes, self.declared)


class _Transient(Exception):
    """Worth another try: a 5xx/408/429 answer, a dropped connection, a truncated body."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 6  # tries in all
    backoff_s: float = 1.0  # first wait; doubles, at most 30 s

    def wait(self, attempt: int) -> None:
        time.sleep(min(self.backoff_s * 2**attempt, 30.0))


Progress = Callable[[str, int | None, int], Callable[[int], None]]  # (label, total, initial) -> advance(n)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * CHUNK):
            digest.update(block)
    return digest.hexdigest()


def disk_full(path: Path, exc: OSError) -> DiskFull:
    return DiskFull(f"disk full while writing {path} ({exc.strerror}); free space there or pull with --dir elsewhere")


def fetch(
    component: Component, file: CatalogueFile, dest: Path, retry: Retry, progress: Progress, limit: SizeLimit
) -> str:
    """Put `file` at `dest` from its first source that works, never writing past `limit`; returns the source used."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    if component.hf is not None:
        source = f"hf://{component.hf.repo}@{component.hf.revision}/{file.path}"
        try:
            fetch_hub(component, file, dest, retry, limit)
            return source
        except DiskFull:
            raise
        except PullError as exc:
            failures.append(f"{source}: {exc}")
    for url in file.plain_urls():
        try:
            label = f"{component.name}/{file.path}"
            fetch_url(url, dest, component.bearer_headers(url), retry, progress, label, limit)
            return url
        except DiskFull:
            raise
        except PullError as exc:
            failures.append(f"{url}: {exc}")
    raise PullError(f"{component.name}/{file.path}: every source failed:\n  " + "\n  ".join(failures))


# --------------------------------------------------------------------------- Hugging Face Hub
def _bounded_progress(limit: SizeLimit) -> type:
    """huggingface_hub's progress bar class, refusing a file past `limit`: the Hub client makes the bar (with the
    size the server announces) before it writes the body, and counts each chunk before writing it."""
    from huggingface_hub.utils import tqdm

    class Bounded(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            limit.check(kwargs.get("total") or 0)
            super().__init__(*args, **kwargs)
            self.seen = kwargs.get("initial") or 0

        def update(self, n: float | None = 1) -> bool | None:
            self.seen += n or 0
            limit.check(self.seen)
            return super().update(n)

    return Bounded


def fetch_hub(component: Component, file: CatalogueFile, dest: Path, retry: Retry, limit: SizeLimit) -> None:
    """hf_hub_download into the staging folder (its local_dir mode: no second copy in the HF cache)."""
    from huggingface_hub import constants, hf_hub_download

    if constants.is_offline_mode():
        raise PullError("HF_HUB_OFFLINE is set (the worker image sets it); run the pull with HF_HUB_OFFLINE=0")
    staging = dest.parents[len(Path(file.path).parts) - 1]
    for attempt in range(retry.attempts):
        try:
            hf_hub_download(
                component.hf.repo,
                file.path,
                revision=component.hf.revision,
                local_dir=staging,
                etag_timeout=30,
                tqdm_class=_bounded_progress(limit),
            )
            return
        except TooLarge:
            raise
        except Exception as exc:  # huggingface_hub's HTTP errors, httpx2 transport errors, OSError
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise disk_full(dest, exc) from exc
            if not _transient_hub_error(exc):
                raise PullError(_first_line(exc)) from exc
            last = exc
        if attempt + 1 < retry.attempts:
            retry.wait(attempt)
    raise PullError(f"gave up after {retry.attempts} tries: {_first_line(last)}")


def _transient_hub_error(exc: BaseException | None) -> bool:
    """A 5xx/408/429 or a connection problem, also behind the Hub's "cannot locate the file" error."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(exc, HfHubHTTPError):
        return exc.response is not None and exc.response.status_code in RETRY_STATUS
    if isinstance(exc, LocalEntryNotFoundError):  # the metadata request failed and nothing is cached
        return _transient_hub_error(exc.__cause__)
    return type(exc).__name__ in {"ConnectError", "ConnectTimeout", "ReadTimeout", "ReadError", "RemoteProtocolError"}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --------------------------------------------------------------------------- plain HTTPS
def fetch_url(
    url: str, dest: Path, headers: dict, retry: Retry, progress: Progress, label: str, limit: SizeLimit
) -> None:
    """GET into `<dest>.partial`, resuming with Range from what is there (also across runs), then rename."""
    partial = dest.with_name(dest.name + PARTIAL)
    last: Exception | None = None
    for attempt in range(retry.attempts):
        try:
            _get_once(url, partial, headers, progress, label, limit)
            os.replace(partial, dest)
            return
        except TooLarge:
            partial.unlink(missing_ok=True)  # not the file: nothing to resume from
            raise
        except _Transient as exc:
            last = exc
        except httpx.TransportError as exc:
            last = _Transient(f"{type(exc).__name__}: {exc}")
        if attempt + 1 < retry.attempts:
            retry.wait(attempt)
    raise PullError(f"gave up after {retry.attempts} tries: {last}")


def _get_once(url: str, partial: Path, headers: dict, progress: Progress, label: str, limit: SizeLimit) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    request_headers = {**headers, "Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    timeout = httpx.Timeout(30.0, read=60.0)
    with httpx.stream("GET", url, headers=request_headers, follow_redirects=True, timeout=timeout) as response:
        status = response.status_code
        if status == 416 and have:  # nothing after what we hold: the partial file is whole
            return
        if status in RETRY_STATUS:
            raise _Transient(f"HTTP {status}")
        if status >= 400:
            raise PullError(f"HTTP {status}")
        if "text/html" in response.headers.get("content-type", ""):
            raise PullError("answered with a web page, not the file (a login, quota or confirmation page?)")
        if status == 200:
            have = 0  # the server ignored Range: start over
        length = response.headers.get("content-length")
        expected = int(length) if length is not None else None
        limit.check(have + (expected or 0))  # an announced body too long is refused before any byte is written
        advance = progress(label, None if expected is None else have + expected, have)
        received = 0
        try:
            with open(partial, "ab" if have else "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    limit.check(have + received + len(chunk))
                    out.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                partial.unlink(missing_ok=True)
                raise disk_full(partial, exc) from exc
            raise
        if expected is not None and received < expected:
            raise _Transient(f"body ended after {received} of {expected} bytes")
