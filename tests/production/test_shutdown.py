"""`ipt-fhir serve` as the README's first command runs it (one worker, the embedded SQLite database):
a SIGTERM while a transaction is being processed lets it finish and commit before the process ends.
(Two workers on PostgreSQL: tests/production/test_scale_out.py.)"""
from __future__ import annotations

import signal
import sqlite3
import threading
import time
import uuid

import httpx

from tests.live_server import ServedProcess, server_env

ENTRIES = 5000  # a transaction that takes the server ~0.9 s here: in flight well past the signal


def test_sigterm_lets_the_transaction_in_flight_commit(tmp_path):
    database = tmp_path / "shutdown.db"
    server = ServedProcess(server_env(IPT_FHIR_DATABASE_URL=f"sqlite:///{database}"), tmp_path / "server.log")
    answered: list[tuple[int, float]] = []
    try:
        server.wait_ready()
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
             "resource": {"resourceType": "Patient", "name": [{"family": f"Drain{i}"}]},
             "request": {"method": "POST", "url": "Patient"}} for i in range(ENTRIES)]}

        def send() -> None:
            r = httpx.post(f"{server.url}/fhir", json=bundle, timeout=60)
            answered.append((r.status_code, time.monotonic()))

        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(0.2)  # the server is storing the entries
        signalled = time.monotonic()
    finally:
        code = server.stop()
    thread.join(60)
    # a single uvicorn worker ends a clean shutdown by re-raising the SIGTERM (README "Shutdown")
    assert code == -signal.SIGTERM
    assert answered and answered[0][0] == 200, answered
    assert answered[0][1] > signalled, "the transaction was answered before the signal: nothing was in flight"
    with sqlite3.connect(database) as conn:
        stored = conn.execute("SELECT count(*) FROM resource WHERE resource_type = 'Patient'").fetchone()[0]
    assert stored == ENTRIES
    log = server.log.read_text()
    assert "ipt-fhir worker stopped" in log and "Traceback" not in log
