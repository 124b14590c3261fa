"""Which webhook URLs a job may call: http(s) only, and (unless allowed) no loopback, private, link-local,
multicast or reserved addresses, so a webhook cannot reach the service's own network (SSRF).

The host is resolved once per delivery and every answer is judged; the delivery then connects to the judged
address itself (worker/webhook_delivery.py), so a DNS answer that changes between check and connect (rebinding)
changes nothing. Addresses are judged as the resolver reads them, so every spelling of one (decimal, octal or hex
integers, short forms, trailing dots, IDNA) is judged as the address it is; IPv6 forms that carry an IPv4 address
(mapped, compatible, SIIT, NAT64, 6to4, Teredo) are judged by that IPv4 address as well.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Resolver = Callable[[str, int], list[str]]  # (ASCII host, port) -> addresses, in the order to try

# IPv6 prefixes whose last 32 bits are an IPv4 address that the packet reaches (or that a translator reaches)
_V4_IN_LAST_32 = [
    ipaddress.IPv6Network(net)
    for net in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")
]


class WebhookTargetError(ValueError):
    """The URL may not be called; the message says why (shown to the client as a 422)."""


@dataclass(frozen=True)
class WebhookTarget:
    url: str  # normalised: scheme://host[:port]/path?query, host in ASCII (IDNA)
    host: str  # names the Host header, TLS SNI and the certificate checked
    port: int
    address: str  # the checked address the delivery connects to


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    found += list(address.teredo or ())  # (server, client)
    found += [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) for net in _V4_IN_LAST_32 if address in net]
    return found


def address_error(text: str) -> str | None:
    """None when the address is public, else why not."""
    address = ipaddress.ip_address(text.split("%")[0])  # drop an IPv6 zone index
    judged = [address, *(_embedded_ipv4(address) if address.version == 6 else ())]
    for candidate in judged:
        if not candidate.is_global or candidate.is_multicast or candidate.is_unspecified:
            via = "" if candidate is address else f" (it carries the IPv4 address {candidate})"
            return f"{address} is a private or reserved address{via}"
    return None


def _parse(url: str) -> tuple[SplitResult, str, int]:
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise WebhookTargetError("webhook_url must not contain spaces, control characters or backslashes")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetError("webhook_url must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise WebhookTargetError(
            "webhook_url must not carry credentials; authenticate with a secret in the path or query"
        )
    try:
        port = parts.port
    except ValueError:  # out of range or not a number
        port = 0
    port = (443 if parts.scheme == "https" else 80) if port is None else port
    if not 0 < port < 65536:
        raise WebhookTargetError("webhook_url port must be a number from 1 to 65535")
    host = parts.hostname.rstrip(".")  # "localhost." is localhost
    try:
        host = host if ":" in host else host.encode("idna").decode("ascii")
    except UnicodeError:
        host = ""
    if not host:
        raise WebhookTargetError(f"webhook_url host {parts.hostname!r} is not a valid host name")
    return parts, host, port


def resolve_webhook_target(url: str, allow_private: bool, resolve: Resolver = system_resolver) -> WebhookTarget:
    """Resolve the URL's host once and judge every address; raises WebhookTargetError with the reason."""
    parts, host, port = _parse(url)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise WebhookTargetError(f"webhook_url host {parts.hostname!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if reason := address_error(address):
                raise WebhookTargetError(f"webhook_url host {parts.hostname!r} is not public: {reason}")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{port}"
    normalised = f"{parts.scheme}://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    return WebhookTarget(normalised, host, port, addresses[0])


def webhook_target_error(url: str, allow_private: bool, resolve: Resolver = system_resolver) -> str | None:
    """None when the URL may be called, else the reason it may not (checked at submission)."""
    try:
        resolve_webhook_target(url, allow_private, resolve)
    except WebhookTargetError as exc:
        return str(exc)
    return None
