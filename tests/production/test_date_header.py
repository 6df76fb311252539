"""Every response has one Date, and a Last-Modified never later than it (RFC 9110 6.6.1, 8.8.2.1): the app
writes Date when the response starts, and `ipt-fhir serve` keeps uvicorn from adding its own once-a-second
copy (which made about half of all writes answer with a Last-Modified a second after their Date)."""
from __future__ import annotations

import signal
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from ipt_fhir.services import resources
from tests.live_server import ServedProcess, server_env

PATIENT = {"resourceType": "Patient", "name": [{"family": "Date"}]}


def _one_date_not_before_last_modified(r: httpx.Response) -> datetime:
    dates = r.headers.get_list("date")
    assert len(dates) == 1, r.headers
    assert dates[0].endswith(" GMT"), dates  # IMF-fixdate (RFC 9110 5.6.7)
    date = parsedate_to_datetime(dates[0])
    if "last-modified" in r.headers:
        assert parsedate_to_datetime(r.headers["last-modified"]) <= date, r.headers
    return date


def test_responses_of_every_kind_carry_the_apps_date_of_now(client):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    created = client.post("/fhir/Patient", json=PATIENT)
    assert created.status_code == 201
    for r in (created, client.get(created.headers["location"]), client.get("/fhir/Patient/nope"),
              client.get("/fhir/metadata"), client.delete("/fhir/metadata"), client.get("/healthz")):
        assert before <= _one_date_not_before_last_modified(r) <= datetime.now(timezone.utc)


def test_the_date_is_read_when_the_response_starts_not_when_the_request_came(client, monkeypatch):
    """A write whose version is stamped in the second after the request arrived: a Date read on arrival
    would be a second older than its Last-Modified."""
    real_now = resources.now_utc

    def now_in_the_next_second() -> datetime:
        time.sleep(1.05 - time.time() % 1)
        return real_now()

    monkeypatch.setattr(resources, "now_utc", now_in_the_next_second)
    _one_date_not_before_last_modified(client.post("/fhir/Patient", json=PATIENT))


def test_served_writes_carry_one_date_not_before_their_last_modified(tmp_path):
    server = ServedProcess(server_env(IPT_FHIR_DATABASE_URL=f"sqlite:///{tmp_path / 'date.db'}"),
                           tmp_path / "server.log")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(20):  # over a second: every phase of a once-a-second Date cache
                r = http.post("/fhir/Patient", json=PATIENT)
                assert r.status_code == 201
                _one_date_not_before_last_modified(r)
                time.sleep(0.06)
    finally:
        # a single uvicorn worker ends a clean shutdown by re-raising the SIGTERM (README "Shutdown")
        assert server.stop() == -signal.SIGTERM
