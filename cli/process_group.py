"""The children of `dvd360 serve` (Redis, Celery workers and their pool children, the reaper) in one process group
of their own, stopped together: SIGTERM to each child in reverse start order, then SIGKILL to the whole group.
Each child also gets SIGTERM from the kernel if `serve` itself dies without cleaning up (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ProcessGroup:
    def __init__(self) -> None:
        self.pgid: int | None = None
        self.children: list[subprocess.Popen] = []

    def popen_args(self) -> dict[str, Any]:
        """Popen keyword arguments that put a child in this group (the first child founds it)."""
        return {"process_group": self.pgid or 0, "preexec_fn": _die_with_parent}

    def add(self, child: subprocess.Popen) -> subprocess.Popen:
        self.pgid = self.pgid or child.pid
        self.children.append(child)
        return child

    def start(self, command: list[str], **popen: Any) -> subprocess.Popen:
        return self.add(subprocess.Popen(command, **self.popen_args(), **popen))

    def alive(self) -> bool:
        if self.pgid is None:
            return False
        for child in self.children:
            child.poll()  # reap our own exited children: a zombie still counts as a group member
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self, grace_s: float = 20.0) -> None:
        """Each child SIGTERMed in reverse start order (the workers finish or hand back their job while Redis still
        answers; Redis writes its append-only file last), then SIGKILL to whatever of the group is left."""
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
        if self.alive():
            self._signal(signal.SIGKILL)  # pool children and anything a child left behind
        for child in self.children:
            child.wait()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)
