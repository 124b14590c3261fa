"""Keeps download-link signatures out of access logs: a signed link is a bearer credential until it expires."""

from __future__ import annotations

import logging
import re

SIGNATURE = re.compile(r"(?i)((?:^|[?&])(?:sig|x-amz-signature|x-amz-credential)=)[^&\s]+")


class RedactSignatures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(SIGNATURE.sub(r"\1REDACTED", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSignatures) for f in access.filters):
        access.addFilter(RedactSignatures())
