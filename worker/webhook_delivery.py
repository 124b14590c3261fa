"""One webhook POST to an already-checked address: the URL's host is resolved and judged once
(worker.webhook_targets), the connection goes to that address, and the host still names the Host header, the TLS
SNI and the certificate that is verified."""

from __future__ import annotations

import ssl

import httpcore
import httpx

from core.webhook_targets import Resolver, resolve_webhook_target, system_resolver

TIMEOUT_S = 10


class _PinnedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, except that every connection goes to one address, whatever the host."""

    def __init__(self, address: str) -> None:
        self.address = address

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return super().connect_tcp(self.address, port, timeout, local_address, socket_options)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport whose connections all go to `address`. httpx takes no network backend, so the
    connection pool (httpcore's, which does) is built here the way httpx builds it."""

    def __init__(self, address: str, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(), network_backend=_PinnedBackend(address)
        )


def post_webhook(
    url: str,
    body: bytes,
    headers: dict[str, str],
    allow_private: bool,
    resolve: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST `body` to `url` once; returns the status code. Raises WebhookTargetError (the URL may not be
    called) or httpx.TransportError (the receiver could not be reached)."""
    target = resolve_webhook_target(url, allow_private, resolve)
    transport = PinnedTransport(target.address, ssl_context)
    with httpx.Client(transport=transport, timeout=TIMEOUT_S, follow_redirects=False, trust_env=False) as client:
        return client.post(target.url, content=body, headers=headers).status_code
