"""Headers that shape a submission, as Replicate's API has them: `Prefer: wait=N` (RFC 7240; answer with the finished
job if it finishes within N seconds) and `Cancel-After: <duration>` (the job's deadline). Bad values are 422s that
say what to send instead."""

from __future__ import annotations

import re

from fastapi import HTTPException

from core.request import MAX_DEADLINE_S

MAX_WAIT_S = 60
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)", re.ASCII)
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def prefer_wait(prefer: str | None) -> int | None:
    """Seconds from `Prefer: wait=N` (other preferences in the header are ignored), or None."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            value = value.strip().strip('"')
            if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_WAIT_S:
                raise HTTPException(422, f"Prefer: wait=N takes whole seconds from 1 to {MAX_WAIT_S}, got {value!r}")
            return int(value)
    return None


def cancel_after_s(header: str | None) -> float | None:
    """Seconds from `Cancel-After` ("30s", "5m", "1h30m", "250ms" or plain seconds), or None without the header."""
    if header is None:
        return None
    text = header.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise HTTPException(
                422, f"Cancel-After must be a duration like 30s, 5m, 1h30m or plain seconds, got {header[:40]!r}"
            ) from None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not 0 < seconds <= MAX_DEADLINE_S:
        raise HTTPException(422, f"Cancel-After must be over 0 and at most {MAX_DEADLINE_S} s, got {header[:40]!r}")
    return seconds
