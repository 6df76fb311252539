"""Every response has one Date, and a Last-Modified never later than it (RFC 9110 6.6.1, 8.8.2.1): the app
writes Date when the response starts, and `ipt-fhir serve` keeps uvicorn from adding its own once-a-second
copy (which made about half of all writes answer with a Last-Modified a second after their Date)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime

import httpx

from tests.live_server import free_port

PATIENT = {"resourceType": "Patient", "name": [{"family": "Date"}]}


def _one_date_not_before_last_modified(r: httpx.Response) -> None:
    dates = r.headers.get_list("date")
    assert len(dates) == 1, r.headers
    if "last-modified" in r.headers:
        assert parsedate_to_datetime(r.headers["last-modified"]) <= parsedate_to_datetime(dates[0]), r.headers


def test_responses_of_every_kind_carry_the_apps_date(client):
    created = client.post("/fhir/Patient", json=PATIENT)
    assert created.status_code == 201
    for r in (created, client.get(created.headers["location"]), client.get("/fhir/Patient/nope"),
              client.get("/fhir/metadata"), client.delete("/fhir/metadata"), client.get("/healthz")):
        _one_date_not_before_last_modified(r)


def test_served_writes_never_answer_with_a_last_modified_after_their_date(tmp_path):
    port = free_port()
    env = {**os.environ, "IPT_FHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'date.db'}"}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "ipt_fhir.cli", "serve", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            # Writes spread over three seconds meet every phase of a once-a-second Date cache.
            for _ in range(60):
                r = http.post("/fhir/Patient", json=PATIENT)
                assert r.status_code == 201
                _one_date_not_before_last_modified(r)
                time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        log.close()
