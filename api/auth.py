"""API keys: random secrets shown once, stored only as SHA-256 digests, checked in constant time.

A record is found by the first 16 hex digits of the digest (a lookup index that reveals nothing usable), then
the whole digest is compared with `hmac.compare_digest`, so response times do not depend on how much of a
guessed key is right."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

import redis

INDEX_CHARS = 16


def hash_key(key: str) -> str:
    # keys are 32 random bytes: a plain SHA-256 suffices (no dictionary to attack, unlike passwords)
    return hashlib.sha256(key.encode()).hexdigest()


def _record_key(digest: str) -> str:
    return f"dvd360:apikey:{digest[:INDEX_CHARS]}"


def create_key(client: redis.Redis, name: str) -> str:
    key = secrets.token_urlsafe(32)
    digest = hash_key(key)
    client.set(_record_key(digest), json.dumps({"name": name, "sha256": digest}))
    return key


def key_owner(client: redis.Redis, key: str) -> str | None:
    """The name a key was created for, or None for an unknown key."""
    digest = hash_key(key)
    raw = client.get(_record_key(digest))
    record = json.loads(raw) if raw else {"name": None, "sha256": "0" * 64}
    return record["name"] if hmac.compare_digest(record["sha256"], digest) else None


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.startswith("Bearer "):
        return authorization[7:]
    return None
