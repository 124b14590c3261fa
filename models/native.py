"""The project's C kernels (`models/csrc`), compiled on first use with the machine's C compiler and cached.

A plain C shared library loaded with ctypes, not a torch C++ extension: it builds in about a second without
torch's headers or ninja, and it shares torch's OpenMP runtime (the loader resolves `libgomp.so.1` to the copy
torch already loaded). Built with `-march=native` for the machine at hand: the cache key holds the CPU's feature
flags, so a cache directory shared between machines never hands one a library for another's instruction set.

Where there is no compiler, the build fails or `DVD360_NATIVE_KERNELS=0`, `load` returns None and callers keep
torch's own kernels.
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


def _build(name: str, compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: processes building at once never load a half-written file.
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
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


@functools.cache
def load(name: str) -> ctypes.CDLL | None:
    """`models/csrc/<name>.c` as a loaded library, built if not cached yet; None where it cannot be."""
    if not enabled():
        return None
    compiler = _compiler()
    if compiler is None:
        log.warning("no C compiler found (CC=%s): %s runs on torch's own kernels", os.environ.get("CC", "cc"), name)
        return None
    try:
        target = library_path(name, compiler)
        if not target.exists():
            _build(name, compiler, target)
        return ctypes.CDLL(str(target))
    except Exception as exc:  # whatever stops the build (no home, read-only disk, compiler error), torch's kernels run
        detail = getattr(exc, "stderr", None) or exc
        log.warning("could not build or load the %s kernels (%s): using torch's own", name, str(detail)[-2000:])
        return None
