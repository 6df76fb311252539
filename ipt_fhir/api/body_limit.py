"""Request body size limit as plain ASGI middleware (no per-request Request/Response wrapping).

A declared Content-Length over the limit is refused before the body is read; a body sent without one
(chunked) is counted as it arrives and refused as soon as it passes the limit. These are the bytes on the
wire: a compressed body is decoded, and its decoded size bounded, further in (content_coding.py).
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ipt_fhir.fhir.outcome import FHIRError, error

from .body import body_root, scope_media_type
from .middleware_outcome import send_outcome


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, scope: Scope) -> FHIRError:
        return FHIRError(413, [error("too-long", f"The request body is larger than {self.max_bytes} bytes",
                                     body_root(scope["path"], scope_media_type(scope)))])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_outcome(send, self._too_large(scope))
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(scope)  # answered by the FHIRError handler as a 413 OperationOutcome
            return message

        await self.app(scope, counting_receive, send)

