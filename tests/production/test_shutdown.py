"""`ipt-fhir serve` as the README's first command runs it (one worker, the embedded SQLite database):
a SIGTERM while a transaction is being processed lets it finish and commit before the process ends;
a request still running when the grace period is over gets an OperationOutcome, never uvicorn's
plain-text 500. (Two workers on PostgreSQL: tests/production/test_scale_out.py.)"""
from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.live_server import ServedProcess, server_env

ENTRIES = 5000  # a transaction that takes the server ~0.9 s here: in flight well past the signal


def _transaction_during_sigterm(database: Path, log: Path, **settings: str) -> tuple[int, httpx.Response, float]:
    """(exit status, the transaction's response, seconds from the signal to that response)."""
    server = ServedProcess(server_env(IPT_FHIR_DATABASE_URL=f"sqlite:///{database}", **settings), log)
    answered: list[tuple[httpx.Response, float]] = []
    try:
        server.wait_ready()
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
             "resource": {"resourceType": "Patient", "name": [{"family": f"Drain{i}"}]},
             "request": {"method": "POST", "url": "Patient"}} for i in range(ENTRIES)]}

        def send() -> None:
            r = httpx.post(f"{server.url}/fhir", json=bundle, timeout=60)
            answered.append((r, time.monotonic()))

        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(0.2)  # the server is storing the entries
        signalled = time.monotonic()
    finally:
        code = server.stop()
    thread.join(60)
    assert answered, "no answer"
    return code, answered[0][0], answered[0][1] - signalled


def test_sigterm_lets_the_transaction_in_flight_commit(tmp_path):
    database = tmp_path / "shutdown.db"
    code, response, after_signal = _transaction_during_sigterm(database, tmp_path / "server.log")
    # a single uvicorn worker ends a clean shutdown by re-raising the SIGTERM (README "Shutdown")
    assert code == -signal.SIGTERM
    assert response.status_code == 200, response.text[:500]
    assert after_signal > 0, "the transaction was answered before the signal: nothing was in flight"
    with sqlite3.connect(database) as conn:
        stored = conn.execute("SELECT count(*) FROM resource WHERE resource_type = 'Patient'").fetchone()[0]
    assert stored == ENTRIES
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
    if audit == "on":
        with sqlite3.connect(database) as conn:
            outcomes = [json.loads(row[0])["outcome"] for row in conn.execute(
                "SELECT content FROM resource WHERE resource_type = 'AuditEvent'")]
        assert "8" in outcomes, outcomes  # serious failure: the 503's own record
