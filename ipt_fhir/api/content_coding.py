"""HTTP content codings (RFC 9110 8.4): gzip and deflate request bodies, gzip responses.

Requests: a body sent with `Content-Encoding: gzip` (or `x-gzip`) or `deflate` is decoded as it arrives,
so a script can post a compressed transaction Bundle or a PUT. The decoded body is bounded by the same
limit as an uncompressed one (IPT_FHIR_MAX_BODY_BYTES; a few kilobytes of gzip can expand to gigabytes,
so the decoder never produces more than the limit allows), data that is not in the coding it names is a
400, and any other coding (br, zstd, compress, or several applied in a row) a 415 whose Accept-Encoding
header names the codings that would have been accepted (RFC 9110 15.5.16). The body limit middleware,
outside this one, still bounds the bytes on the wire.

Responses: gzip-compressed when the request's Accept-Encoding admits gzip (RFC 9110 12.5.3: by name or
by `*`, with a non-zero weight) and the body is at least COMPRESS_MIN_BYTES. Below that, compression
costs more than it saves: zlib's set-up alone measured ~40-90 µs, as much as a whole read by id, to save
2 kB. Search and history Bundles, $everything pages and bulk export files are what gains (8-14 times
smaller). Only text is compressed (JSON, NDJSON, text/*, XML, scripts): a Binary served in its own media
type (an image, a PDF) is mostly compressed already. Every response says `Vary: Accept-Encoding`; partial
(206) responses and bodies already coded pass unchanged, and HEAD keeps the headers of the uncompressed
form.
"""
from __future__ import annotations

import asyncio
import zlib
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ipt_fhir.fhir.outcome import FHIRError, error

from .body import body_root, scope_media_type
from .middleware_outcome import send_outcome
from .negotiation import weighted_values

COMPRESS_MIN_BYTES = 8 * 1024
# zlib level 4: on a 377 kB $everything page 13x smaller in 2.7 ms (level 1: 11x in 1.3 ms, level 6: 14x
# in 3.3 ms); the server's time is worth more than the last few kilobytes.
COMPRESS_LEVEL = 4
COMPRESS_IN_THREAD_BYTES = 128 * 1024  # zlib releases the GIL: large bodies compress beside the event loop
ACCEPTED_REQUEST_CODINGS = b"gzip, deflate"

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_VARY = (b"vary", b"Accept-Encoding")
_CODED = {"gzip": _GZIP_WBITS, "x-gzip": _GZIP_WBITS, "deflate": _ZLIB_WBITS}


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding field value admits gzip: named (or as x-gzip) with a weight above 0,
    or not named and `*` is, with a weight above 0."""
    named = star = None
    for coding, weight in weighted_values(accept_encoding):
        if coding in ("gzip", "x-gzip"):
            named = max(named or 0.0, weight)
        elif coding == "*":
            star = weight
    if named is not None:
        return named > 0
    return star is not None and star > 0


class ContentCodingMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_coding = None
        gzip_ok = False
        has_body = False  # a Content-Length above 0, or a chunked body
        for name, value in scope["headers"]:
            if name == b"content-encoding":
                coding = value.decode("latin-1").strip().lower()
                if coding and coding != "identity":
                    request_coding = coding
            elif name == b"accept-encoding":
                gzip_ok = gzip_ok or accepts_gzip(value.decode("latin-1"))
            elif name == b"content-length":
                has_body = value.strip() != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        if request_coding is not None and has_body:  # the field says nothing about a body not sent
            wbits = _CODED.get(request_coding)
            if wbits is None:
                await send_outcome(send, FHIRError(415, [error(
                    "not-supported", f"Content-Encoding '{request_coding}' is not supported: send the body "
                                     "uncompressed, or compressed with gzip or deflate",
                    body_root(scope["path"], scope_media_type(scope)))]),
                    extra_headers=((b"accept-encoding", ACCEPTED_REQUEST_CODINGS),))
                return
            # Downstream sees the decoded body: its length is not the one on the wire, and it is no
            # longer coded.
            scope = dict(scope)
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in (b"content-encoding", b"content-length")]
            receive = _decoding_receive(receive, wbits, self.max_bytes)
        if gzip_ok and scope["method"] != "HEAD":  # HEAD: the headers of the uncompressed form
            await self.app(scope, receive, _GzipSender(send).send)
        else:
            await self.app(scope, receive, _vary_only(send))


def _decoding_receive(receive: Receive, wbits: int, max_bytes: int) -> Receive:
    decoder = zlib.decompressobj(wbits)
    produced = 0

    def too_large() -> FHIRError:
        return FHIRError(413, [error(
            "too-long", f"The decoded request body is larger than {max_bytes} bytes")])

    async def decoding_receive() -> Message:
        nonlocal produced
        message = await receive()
        if message["type"] != "http.request":
            return message
        more = message.get("more_body", False)
        try:
            # Never more output than the limit allows, however much the input expands.
            data = decoder.decompress(message.get("body", b""), max_bytes + 1 - produced)
            if decoder.unconsumed_tail:
                raise too_large()
            if not more:
                data += decoder.flush()
        except zlib.error as exc:
            raise FHIRError(400, [error("structure", f"The request body is not valid {_name(wbits)} data: {exc}")]) from None
        produced += len(data)
        if produced > max_bytes:
            raise too_large()
        if not more and not decoder.eof:
            raise FHIRError(400, [error("structure", f"The request body ends before its {_name(wbits)} data does")])
        if decoder.unused_data:
            raise FHIRError(400, [error("structure", f"The request body has data after its {_name(wbits)} stream")])
        return {**message, "body": data}

    return decoding_receive


def _name(wbits: int) -> str:
    return "gzip" if wbits == _GZIP_WBITS else "deflate"


def _compressible(headers: list[tuple[bytes, bytes]]) -> bool:
    """A body not coded yet, of a text media type."""
    media = b""
    for name, value in headers:
        if name == b"content-encoding":
            return False
        if name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
    return media.startswith(b"text/") or media.endswith((b"json", b"xml", b"javascript"))  # json: ndjson too


def _with_vary(start: Message) -> Message:
    """The response start, saying that its representation depends on Accept-Encoding."""
    return {**start, "headers": [*start.get("headers", ()), _VARY]}


def _vary_only(send: Send) -> Send:
    async def vary_send(message: Message) -> None:
        await send(_with_vary(message) if message["type"] == "http.response.start" else message)
    return vary_send


class _GzipSender:
    """Holds the response start until the first body part shows whether to compress: a whole body below
    COMPRESS_MIN_BYTES, a 206 or an already coded body goes out as it is."""

    __slots__ = ("_send", "_start", "_compressor", "_passthrough")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._compressor = None
        self._passthrough = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            message = _with_vary(message)
            self._passthrough = message["status"] == 206 or not _compressible(message["headers"])
            if self._passthrough:
                await self._send(message)
            else:
                self._start = message
            return
        if kind != "http.response.body" or self._passthrough:
            if self._start is not None:  # e.g. a pathsend: the start goes out first, uncompressed
                start, self._start, self._passthrough = self._start, None, True
                await self._send(start)
            await self._send(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        start, self._start = self._start, None
        if start is not None:  # the first body part
            if not more and len(body) < COMPRESS_MIN_BYTES:
                self._passthrough = True
                await self._send(start)
                await self._send(message)
                return
            self._compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
            headers = [(n, v) for n, v in start["headers"] if n != b"content-length"]
            headers.append((b"content-encoding", b"gzip"))
            coded = await self._compress(body, more)
            if not more:
                headers.append((b"content-length", str(len(coded)).encode()))
            await self._send({**start, "headers": headers})
            await self._send({**message, "body": coded})
            return
        await self._send({**message, "body": await self._compress(body, more)})

    async def _compress(self, body: bytes, more: bool) -> bytes:
        compressor = self._compressor

        def run() -> bytes:  # a part of a stream is flushed so that it can be decoded on arrival
            return compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)

        if len(body) >= COMPRESS_IN_THREAD_BYTES:
            return await asyncio.get_running_loop().run_in_executor(None, run)
        return run()
