"""An OperationOutcome answered from plain ASGI middleware, which runs outside the app's exception
handlers (api/errors.py): the body limit, content codings, the audit guard."""
from __future__ import annotations

from typing import Iterable

from starlette.types import Send

from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.fhir.outcome import FHIRError, operation_outcome


async def send_outcome(send: Send, err: FHIRError, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = dump_json(operation_outcome(err.issues))
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/fhir+json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra_headers]})
    await send({"type": "http.response.body", "body": body})
