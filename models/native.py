"""The project's C kernels (`models/csrc`), compiled on first use with the machine's C compiler and cached.

A plain C shared library loaded with ctypes, not a torch C++ extension: it builds in about a second without
torch's headers or ninja, and it shares torch's OpenMP runtime (the loader resolves `libgomp.so.1` to the copy
torch already loaded). Built with `-march=native` for the machine at hand: the cache key holds the CPU's feature
flags, so a cache directory shared between machines never hands one a library for another's instruction set.

The cache is trusted only as far as it is safe: a library is loaded only from a folder and a file owned by this
user that no one else may write, and only when its sha256 equals the one recorded when it was built here (a
library that differs is built again). Where there is no compiler, the build fails, the cache is unsafe, the
library lacks a kernel's symbol or `DVD360_NATIVE_KERNELS=0`, `load` returns None (with one warning) and callers
keep torch's own kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCES = Path(__file__).parent / "csrc"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11")
BUILD_TIMEOUT_S = 120


def enabled() -> bool:
    return os.environ.get("DVD360_NATIVE_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """`DVD360_NATIVE_CACHE`, else the user's cache directory (XDG). Never a shared temporary directory: another
    user could plant a library there."""
    if configured := os.environ.get("DVD360_NATIVE_CACHE"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dvd360" / "native"


def _cpu_flags() -> bytes:
    try:
        for line in Path("/proc/cpuinfo").read_bytes().splitlines():
            if line.startswith((b"flags", b"Features")):
                return line
    except OSError:
        pass
    return os.uname().machine.encode()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def library_path(name: str, compiler: str) -> Path:
    source = (SOURCES / f"{name}.c").read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), compiler.encode(), _cpu_flags()]))
    return cache_dir() / f"{name}-{key.hexdigest()[:16]}.so"


def _digest_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class UnsafeCache(RuntimeError):
    """A cache folder or file that someone other than this user could have written."""


def _check_private(path: Path, info: os.stat_result) -> None:
    """Owned by this user, writable by no group or other user (a symbolic link's own mode, 777, never passes)."""
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise UnsafeCache(
            f"{path} is owned by uid {info.st_uid} with mode {info.st_mode & 0o777:o}: only a folder and files of "
            f"uid {os.getuid()} that no one else may write are loaded from (set DVD360_NATIVE_CACHE to such a folder)"
        )


def _private_folder(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    _check_private(folder, folder.stat())
    return folder


def _write_private(path: Path, data: bytes) -> None:
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)


def _build(name: str, compiler: str, target: Path) -> None:
    _private_folder(target.parent)
    # Built beside the target and renamed into place: processes building at once never load a half-written file.
    # The digest goes first: a library in place always has the digest of a build beside it (builds of the same
    # source by the same compiler are identical, so racing builds record the same digest).
    fd, partial = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *FLAGS, "-o", partial, str(SOURCES / f"{name}.c")],
            check=True,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        os.chmod(partial, 0o755)  # the linker's mode follows the umask: a group-writable library would be refused
        _write_private(_digest_path(target), _sha256(Path(partial)).encode() + b"\n")
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def _verified(target: Path) -> bool:
    """Whether the cached library is the one built here: safe folder and files, sha256 as recorded."""
    _private_folder(target.parent)
    digest = _digest_path(target)
    if not target.exists() or not digest.exists():
        return False
    _check_private(target, target.lstat())
    _check_private(digest, digest.lstat())
    if _sha256(target) == digest.read_text().strip():
        return True
    log.warning("%s differs from the library built here (sha256 in %s): building it again", target, digest.name)
    return False


@functools.cache
def load(name: str, symbols: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """`models/csrc/<name>.c` as a loaded library that has every one of `symbols`, built if not cached yet (or if
    the cached file is not the one built here); None, with one warning, where it cannot be."""
    if not enabled():
        return None
    compiler = _compiler()
    if compiler is None:
        log.warning("no C compiler found (CC=%s): %s runs on torch's own kernels", os.environ.get("CC", "cc"), name)
        return None
    try:
        target = library_path(name, compiler)
        if not _verified(target):
            _build(name, compiler, target)
            if not _verified(target):
                raise UnsafeCache(f"{target} changed while it was built")
        library = ctypes.CDLL(str(target))
    except Exception as exc:  # whatever stops the build (no home, read-only disk, compiler error), torch's kernels run
        detail = getattr(exc, "stderr", None) or exc
        log.warning("could not build or load the %s kernels (%s): using torch's own", name, str(detail)[-2000:])
        return None
    if missing := [symbol for symbol in symbols if not hasattr(library, symbol)]:
        log.warning("%s lacks %s: %s runs on torch's own kernels", target, ", ".join(missing), name)
        return None
    return library
