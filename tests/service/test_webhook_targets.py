"""Webhook targets (SSRF): every spelling of a private address is refused (the system resolver reads the numeric
ones: no DNS involved), IPv6 forms carrying an IPv4 address are judged by it, bad ports are 422s; a DNS answer
that changes between check and connect (rebinding, simulated with an injected resolver) never reaches loopback;
real local HTTP and HTTPS receivers show the connection goes to the checked address with the URL's Host, SNI and
certificate; webhooks are always signed with a key shared through Redis."""

from __future__ import annotations

import hmac
import http.server
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from core.signing import KEY, signing_key, verify_webhook, webhook_headers
from core.webhook_targets import WebhookTargetError, webhook_target_error
from worker.webhook_delivery import post_webhook

PUBLIC = "93.184.216.34"

PRIVATE_SPELLINGS = [
    "http://127.0.0.1/",
    "http://2130706433/",  # decimal integer
    "http://017700000001/",  # octal integer
    "http://0x7f000001/",  # hex integer
    "http://0x7f.1/",
    "http://0x7f.0x0.0x0.0x1/",
    "http://0177.0.0.1/",  # octal parts
    "http://127.1/",  # short form
    "http://127.0.0.1./",  # trailing dot
    "http://localhost./",
    "http://ｌｏｃａｌｈｏｓｔ/",  # full-width: IDNA maps it to localhost
    "http://LOCALHOST:8080/x",
    "http://0/",
    "http://[::]/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::ffff:0:127.0.0.1]/",  # SIIT
    "http://[64:ff9b::127.0.0.1]/",  # NAT64
    "http://[64:ff9b::10.0.0.1]/",
    "http://[64:ff9b:1::a9fe:a9fe]/",  # local-use NAT64 prefix
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::]/",  # 6to4 of the cloud metadata address
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://224.0.0.1/",  # multicast
    "http://255.255.255.255/",
]
PUBLIC_SPELLINGS = [
    f"http://{PUBLIC}/",
    "https://1.1.1.1:8443/hook?token=x",
    "http://[2606:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::8.8.8.8]/",
    "http://[2002:808:808::]/",
    "http://16843009/",  # 1.1.1.1 as an integer
]


@pytest.mark.parametrize("url", PRIVATE_SPELLINGS)
def test_every_spelling_of_a_private_address_is_refused(url: str) -> None:
    reason = webhook_target_error(url, allow_private=False)
    assert reason is not None and "private or reserved" in reason, (url, reason)


@pytest.mark.parametrize("url", PUBLIC_SPELLINGS)
def test_public_addresses_are_allowed(url: str) -> None:
    assert webhook_target_error(url, allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://1.1.1.1:99999/", "port"),
        ("http://1.1.1.1:65536/", "port"),
        ("http://1.1.1.1:0/", "port"),
        ("http://1.1.1.1:-1/", "port"),
        ("http://1.1.1.1:http/", "port"),
        ("http://user@1.1.1.1/", "credentials"),
        ("http://:@1.1.1.1/", "credentials"),
        ("http://1.1.1.1\\@127.0.0.1/", "backslashes"),
        ("http://1.1.1.1/a b", "spaces"),
        ("ftp://1.1.1.1/", "http"),
        ("//1.1.1.1/", "http"),
        ("http://./", "valid host"),
        ("http://" + "a" * 64 + ".com/", "valid host"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, reason: str) -> None:
    error = webhook_target_error(url, allow_private=True)
    assert error is not None and reason in error, (url, error)


def test_every_resolved_address_is_judged() -> None:
    assert "127.0.0.1" in webhook_target_error("http://hook.example/", False, lambda h, p: [PUBLIC, "127.0.0.1"])
    assert "does not resolve" in webhook_target_error("http://hook.example/", False, lambda h, p: [])


def test_an_out_of_range_port_is_a_422(redis_url, tmp_path) -> None:
    from api.app import create_app
    from core.settings import Settings

    api = TestClient(create_app(Settings(redis_url=redis_url, data_dir=tmp_path, auth=False, signing_key="k")))
    for url in ("http://1.1.1.1:99999/", "http://[::1]:70000/", "http://1.1.1.1:x/"):
        answer = api.post("/generate", json={"prompt": "x", "webhook_url": url})
        assert answer.status_code == 422 and "port" in answer.text, (url, answer.text)


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.HTTPServer]:
    """A real HTTP server on 127.0.0.1 (a free port) that records what it receives."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_rebinding_never_reaches_loopback(receiver, monkeypatch) -> None:
    """The resolver answers a public address, then loopback (a rebinding DNS server): the delivery resolves once,
    and connects to the address it judged."""
    port = receiver.server_address[1]
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, _: int) -> list[str]:
        calls.append(host)
        return next(answers)

    connected: list[tuple[str, int]] = []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):  # the public address is not reachable here: refuse it at once
        connected.append(address)
        if address[0] == PUBLIC:
            raise ConnectionRefusedError(f"{PUBLIC} is not reachable from the test")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    with pytest.raises(httpx.ConnectError):
        post_webhook(f"http://rebind.example:{port}/hook", b"{}", {}, allow_private=False, resolve=rebinding)
    assert calls == ["rebind.example"] and connected == [(PUBLIC, port)] and receiver.received == []
    # the next delivery resolves again, gets loopback, and refuses before connecting
    with pytest.raises(WebhookTargetError, match=r"127\.0\.0\.1"):
        post_webhook(f"http://rebind.example:{port}/hook", b"{}", {}, allow_private=False, resolve=rebinding)
    assert connected == [(PUBLIC, port)] and receiver.received == []


def test_delivery_connects_to_the_checked_address_with_the_urls_host(receiver) -> None:
    """With private targets allowed (as in the embedded service), a real local receiver: the name is resolved by
    the injected resolver only, the request carries the URL's Host and the signature."""
    port = receiver.server_address[1]
    body = b'{"event": "job.succeeded"}'
    headers = {"Content-Type": "application/json", **webhook_headers("k", "msg-1", body)}
    url = f"http://hooks.example:{port}/hook?token=t"
    status = post_webhook(url, body, headers, allow_private=True, resolve=lambda h, p: ["127.0.0.1"])
    assert status == 204
    ((received, got),) = receiver.received
    assert got == body and received["Host"] == f"hooks.example:{port}"
    expected = "sha256=" + hmac.new(b"k", body, "sha256").hexdigest()
    assert hmac.compare_digest(received["X-Dvd360-Signature"], expected)
    assert verify_webhook("k", received, got) == {"event": "job.succeeded"} and received["webhook-id"] == "msg-1"
    with pytest.raises(WebhookTargetError, match="private"):  # the same receiver, private targets not allowed
        post_webhook(url, body, headers, allow_private=False, resolve=lambda h, p: ["127.0.0.1"])
    assert len(receiver.received) == 1


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


def test_https_keeps_sni_and_verifies_the_hosts_certificate(tmp_path) -> None:
    """A real TLS receiver on 127.0.0.1 with a certificate for hooks.example: the delivery connects to the
    address, sends SNI hooks.example and accepts the certificate; a URL naming another host is refused by
    certificate verification though it reaches the same address."""
    cert, key = _certificate(tmp_path, "hooks.example")
    seen_sni: list[str | None] = []
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server_context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client_context = ssl.create_default_context(cafile=cert)
        port, local = server.server_address[1], lambda h, p: ["127.0.0.1"]
        status = post_webhook(f"https://hooks.example:{port}/", b"{}", {}, True, local, client_context)
        assert status == 204 and seen_sni == ["hooks.example"]
        assert server.received[0][0]["Host"] == f"hooks.example:{port}"
        with pytest.raises(httpx.ConnectError, match=r"certificate|hostname"):
            post_webhook(f"https://other.example:{port}/", b"{}", {}, True, local, client_context)
        assert len(server.received) == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_signing_key_is_generated_once_and_shared(redis_url) -> None:
    first, second = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    first.delete(KEY)
    generated = signing_key(first, "")
    assert len(generated) == 64 and signing_key(second, "") == generated  # every process signs alike
    assert first.ttl(KEY) == -1  # kept: no expiry
    assert signing_key(second, "configured") == "configured"  # DVD360_SIGNING_KEY wins
    first.delete(KEY)
