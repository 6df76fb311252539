"""`ipt-fhir serve` as the README's first command runs it (one worker, the embedded SQLite database):
a SIGTERM while a transaction is being processed lets it finish and commit before the process ends;
a request still running when the grace period is over gets an OperationOutcome, never uvicorn's
plain-text 500. (Two workers on PostgreSQL: tests/production/test_scale_out.py.)"""
from __future__ import annotations

import asyncio
import signal
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import sqlalchemy as sa

from ipt_fhir.api.errors import UnexpectedErrorMiddleware
from ipt_fhir.store.database import Database
from ipt_fhir.store.tables import resource_table
from tests.live_server import ServedProcess, server_env
from tests.security.conftest import audit_events

ENTRIES = 5000  # a transaction that takes the server ~0.9 s here: in flight well past the signal


def _transaction_during_sigterm(database: Path, log: Path, **settings: str) -> tuple[int, httpx.Response, float]:
    """(exit status, the transaction's response, seconds from the signal to that response)."""
    server = ServedProcess(server_env(IPT_FHIR_DATABASE_URL=f"sqlite:///{database}", **settings), log)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
         "resource": {"resourceType": "Patient", "name": [{"family": f"Drain{i}"}]},
         "request": {"method": "POST", "url": "Patient"}} for i in range(ENTRIES)]}
    return server.stop_during(lambda: httpx.post(f"{server.url}/fhir", json=bundle, timeout=60))


@contextmanager
def _opened(database: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{database}")
    try:
        yield db
    finally:
        db.dispose()


def _patients(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).where(resource_table.c.resource_type == "Patient")).scalar_one()


def test_sigterm_lets_the_transaction_in_flight_commit(tmp_path):
    database = tmp_path / "shutdown.db"
    code, response, after_signal = _transaction_during_sigterm(database, tmp_path / "server.log")
    # a single uvicorn worker ends a clean shutdown by re-raising the SIGTERM (README "Shutdown")
    assert code == -signal.SIGTERM
    assert response.status_code == 200, response.text[:500]
    assert after_signal > 0, "the transaction was answered before the signal: nothing was in flight"
    with _opened(database) as db:
        assert _patients(db) == ENTRIES
    log = (tmp_path / "server.log").read_text()
    assert "ipt-fhir worker stopped" in log and "Traceback" not in log


@pytest.mark.parametrize("audit", ["off", "on"])  # audited, its AuditEvent is written before the answer leaves
def test_a_request_cut_off_by_the_end_of_the_grace_period_gets_an_operation_outcome(tmp_path, audit):
    database = tmp_path / "cut.db"
    code, response, _ = _transaction_during_sigterm(database, tmp_path / "server.log",
                                                    IPT_FHIR_SHUTDOWN_TIMEOUT="0", IPT_FHIR_AUDIT=audit)
    assert code == -signal.SIGTERM
    assert response.status_code == 503, response.text[:500]
    assert response.headers["content-type"].startswith("application/fhir+json")
    issue = response.json()["issue"][0]
    assert response.json()["resourceType"] == "OperationOutcome" and issue["code"] == "timeout"
    assert "may or may not have been stored" in issue["diagnostics"]  # the thread's commit cannot be stopped
    assert response.headers.get("x-request-id") and response.headers.get("date")
    with _opened(database) as db:
        assert _patients(db) in (0, ENTRIES)  # whichever it was, all or nothing
        if audit == "on":  # the 503's own record: serious failure
            assert "8" in [e["outcome"] for e in audit_events(db)]


def _cancelled_through_the_middleware(app) -> list[dict]:  # noqa: ANN001
    """The messages UnexpectedErrorMiddleware sends for an `app` whose request task is cancelled; the
    cancellation must still reach the caller (the task ends cancelled)."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/fhir", "headers": []}
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(UnexpectedErrorMiddleware(app)(scope, receive, send))
    return sent


def test_a_cancelled_request_is_answered_once_and_stays_cancelled():
    async def cut_off_before_answering(scope, receive, send):  # noqa: ANN001
        raise asyncio.CancelledError

    async def cut_off_mid_answer(scope, receive, send):  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise asyncio.CancelledError

    sent = _cancelled_through_the_middleware(cut_off_before_answering)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [503]
    # once the status line is out there is nothing to answer with: no second start
    sent = _cancelled_through_the_middleware(cut_off_mid_answer)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
