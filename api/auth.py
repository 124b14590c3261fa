"""API keys: random secrets shown once, stored only as SHA-256 digests, checked in constant time.

A record is found by the first 16 hex digits of the digest (a lookup index that reveals nothing usable), then
the whole digest is compared with `hmac.compare_digest`, so response times do not depend on how much of a
guessed key is right."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import redis

INDEX_CHARS = 16


def hash_key(key: str) -> str:
    # keys are 32 random bytes: a plain SHA-256 suffices (no dictionary to attack, unlike passwords)
    return hashlib.sha256(key.encode()).hexdigest()


def _record_key(digest: str) -> str:
    return f"dvd360:apikey:{digest[:INDEX_CHARS]}"


NAMES_KEY = "dvd360:apikey-names"  # name -> the record key of its one API key (a name is one identity)


class KeyNameTaken(ValueError):
    """A key already exists for this name: one name, one identity (revoke it first to replace it)."""


def create_key(client: redis.Redis, name: str) -> str:
    """A new key for `name`, printed once by the caller; refused when `name` already has one."""
    key = secrets.token_urlsafe(32)
    digest = hash_key(key)
    record_key = _record_key(digest)
    if not client.hsetnx(NAMES_KEY, name, record_key):
        raise KeyNameTaken(f"{name!r} already has an API key; revoke it first (dvd360 keys revoke {name})")
    client.set(record_key, json.dumps({"name": name, "sha256": digest, "created_at": time.time()}))
    return key


def list_keys(client: redis.Redis) -> list[dict]:
    """Every key's name and creation time (never the key or its digest)."""
    records = []
    for name, record_key in sorted(client.hgetall(NAMES_KEY).items()):
        raw = client.get(record_key)
        created = json.loads(raw).get("created_at") if raw else None
        records.append({"name": name.decode(), "created_at": created})
    return records


def revoke_key(client: redis.Redis, name: str) -> bool:
    """Delete `name`'s key: requests with it get 401 from then on. False when there was none."""
    record_key = client.hget(NAMES_KEY, name)
    if record_key is None:
        return False
    client.delete(record_key)
    client.hdel(NAMES_KEY, name)
    return True


def key_owner(client: redis.Redis, key: str) -> str | None:
    """The name a key was created for, or None for an unknown key."""
    digest = hash_key(key)
    raw = client.get(_record_key(digest))
    record = json.loads(raw) if raw else {"name": None, "sha256": "0" * 64}
    return record["name"] if hmac.compare_digest(record["sha256"], digest) else None
