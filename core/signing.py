"""The deployment's HMAC key and the webhook signatures made with it.

The key: DVD360_SIGNING_KEY, else one generated at first start and kept in Redis, created once (SET NX), so that
every process of the deployment signs with the same key. It signs local download links and webhooks.

Webhooks are signed the Standard Webhooks way (standardwebhooks.com, with its reference library): `webhook-id`,
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, whose secret is
`webhook_secret(key)`. For one release they also carry the older `X-Dvd360-Signature: sha256=<hex HMAC of the
body>`. Receivers check with `verify_webhook`, which refuses timestamps more than 5 minutes away.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import redis
from standardwebhooks import Webhook, WebhookVerificationError

KEY = "dvd360:signing-key"
log = logging.getLogger(__name__)

__all__ = ["WebhookVerificationError", "signing_key", "verify_webhook", "webhook_headers", "webhook_secret"]


def signing_key(client: redis.Redis, configured: str) -> str:
    if configured:
        return configured
    if client.set(KEY, secrets.token_hex(32), nx=True):
        log.warning("no DVD360_SIGNING_KEY set: generated one and stored it in Redis as %s (set it to keep it)", KEY)
    return client.get(KEY).decode()


def webhook_secret(key: str) -> str:
    """The Standard Webhooks secret (`whsec_<base64>`) whose bytes are the signing key's: what receivers configure."""
    return "whsec_" + base64.b64encode(key.encode()).decode()


def webhook_headers(key: str, message_id: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """The signature headers of one delivery. `message_id` stays the same over the retries of one event, so a
    receiver can drop duplicates."""
    sent = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, tz=UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent.timestamp())),
        "webhook-signature": Webhook(webhook_secret(key)).sign(message_id, sent, body),
        "X-Dvd360-Signature": "sha256=" + hmac.new(key.encode(), body, "sha256").hexdigest(),  # until the next release
    }


def verify_webhook(key: str, headers: Mapping[str, str], body: bytes) -> dict:
    """The delivery's JSON payload, if its signature is the deployment's and its timestamp within 5 minutes of now;
    raises WebhookVerificationError otherwise. `key` is the deployment's DVD360_SIGNING_KEY."""
    return Webhook(webhook_secret(key)).verify(body, dict(headers))
