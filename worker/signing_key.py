"""The deployment's HMAC key (webhook signatures): DVD360_SIGNING_KEY, else one generated at first start and kept
in Redis, created once (SET NX) so that every process of the deployment signs with the same key."""

from __future__ import annotations

import logging
import secrets

import redis

KEY = "dvd360:signing-key"
log = logging.getLogger(__name__)


def signing_key(client: redis.Redis, configured: str) -> str:
    if configured:
        return configured
    if client.set(KEY, secrets.token_hex(32), nx=True):
        log.warning("no DVD360_SIGNING_KEY set: generated one and stored it in Redis as %s (set it to keep it)", KEY)
    return client.get(KEY).decode()
