"""One `dvd360 serve` per data folder and per port, refused before anything starts.

The data folder's lock is `<data folder>/serve.lock`: an advisory lock (flock) held by the running serve for its
whole life, with its PID and URL written inside. The kernel drops the lock when that process ends, however it
ends, so a lock file left by a dead serve is simply taken over. The HTTP port is bound and listening before Redis
or any worker starts, and handed to uvicorn; a taken port names the process that holds it where this user may see
it."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK_NAME = "serve.lock"


class AlreadyServing(RuntimeError):
    """Another process serves this data folder or holds this port; the message names it."""


class DataFolderLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataFolderLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").split()
            os.close(fd)
            pid, url = [*holder, "?", "?"][:2]
            raise AlreadyServing(
                f"{self.path.parent} is in use by another dvd360 serve (PID {pid}, {url}): stop it, or give this one "
                "another --data-dir"
            ) from None
        self._fd = fd
        self.record("starting")
        return self

    def record(self, url: str) -> None:
        """The PID and URL a second serve names (rewritten in place: the lock stays held)."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()} {url}\n".encode(), 0)

    def release(self) -> None:
        """Unlocked, the file left in place (unlinking it would let two later serves lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening (as uvicorn binds: SO_REUSEADDR), for uvicorn to serve on."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise AlreadyServing(f"cannot listen on {host}:{port} ({exc.strerror}){_holder(port)}") from exc
    return sock


def _holder(port: int) -> str:
    """', held by PID n (its command)' for the process listening on `port`, where psutil can see it."""
    try:
        import psutil

        for connection in psutil.net_connections("tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
                command = " ".join(" ".join(psutil.Process(connection.pid).cmdline()).split())[:200]
                return f", held by PID {connection.pid} ({command})"
    except Exception:  # psutil missing, or not allowed to see other users' sockets: the port alone is named
        pass
    return ""


def serving_url(data_dir: Path) -> str | None:
    """The URL of the serve running on `data_dir` (what `dvd360 submit` talks to by default), or None when none is."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it: a lock file left by a serve that ended
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").split()
        return holder[1] if len(holder) > 1 and holder[1].startswith("http") else None
    finally:
        os.close(fd)
