"""Which webhook URLs a job may call: http(s) only, and (unless allowed) no loopback, private, link-local or
reserved addresses, so a webhook cannot reach the service's own network (SSRF). Checked when the job is
submitted and again at every delivery (DNS answers can change in between)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def webhook_target_error(url: str, allow_private: bool) -> str | None:
    """None when the URL may be called, else the reason it may not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook_url must be an absolute http:// or https:// URL"
    if parts.username or parts.password:
        return "webhook_url must not carry credentials; authenticate with a secret in the path or query"
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"webhook_url host {parts.hostname!r} does not resolve"
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if not address.is_global:
            return f"webhook_url host {parts.hostname!r} is a private or reserved address ({address})"
    return None
