"""Caps on what a request may carry, enforced before anything is parsed: headers (uvicorn's httptools parser
has no limit of its own) and bodies while they stream in: a declared Content-Length over the cap is refused at
once, and a chunked body is cut off the moment it passes the cap."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the request fields beside the file
HEADER_BYTES = 16 * 1024  # what browsers and API clients send is far below; proxies commonly cap at 8-16 KB


class BodyTooLarge(Exception):
    pass


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, upload_bytes: int, other_bytes: int = 1024 * 1024) -> None:
        self.app, self.upload_bytes, self.other_bytes = app, upload_bytes + FORM_OVERHEAD, other_bytes

    def _limit(self, scope: Scope) -> int:
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        return self.upload_bytes if multipart else self.other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if sum(len(name) + len(value) for name, value in scope["headers"]) > HEADER_BYTES:
            await self._answer(send, 431, f"request headers are larger than {HEADER_BYTES // 1024} KB")
            return
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await self._refuse(send, limit)
            return
        received, exceeded = 0, False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                exceeded = True
                raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # frameworks may turn the stream's error into their own 400; the answer is 413 whatever they say
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._refuse(send, limit)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            await self._refuse(send, limit)

    @classmethod
    async def _refuse(cls, send: Send, limit: int) -> None:
        await cls._answer(send, 413, f"request body is larger than {limit / 2**20:.1f} MB; send a smaller file")

    @staticmethod
    async def _answer(send: Send, status: int, detail: str) -> None:
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})
