"""Scale-out with real processes: two `ipt-fhir serve --workers 2` instances on one PostgreSQL database,
as deployed (SMART authorization on, RS256 tokens from a JWKS file). Concurrent writers through both
instances: version-aware updates have exactly one winner per version and lose no update; conditional
create stays unique; /metrics sums the workers; SIGTERM shuts down cleanly."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ipt_fhir.store import migrate
from tests.live_server import ServedProcess, server_env
from tests.pg import scratch_database

CLIENTS = 12
INCREMENTS_PER_CLIENT = 5
ISSUER = "https://auth.scale-test.example"
AUDIENCE = "https://fhir.scale-test.example/fhir"


def _jwks_and_token(directory: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="scale-test", use="sig", alg="RS256")
    (directory / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "scale-test", "scope": "user/*.*",
              "exp": int(time.time()) + 3600, "iat": int(time.time())}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "scale-test"})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with scratch_database("ipt_fhir_scale") as url:
        migrate.upgrade(url)
        work = tmp_path_factory.mktemp("scale")
        token = _jwks_and_token(work)
        env = server_env(IPT_FHIR_DATABASE_URL=url, IPT_FHIR_AUTH="smart", IPT_FHIR_JWKS=str(work / "jwks.json"),
                         IPT_FHIR_JWT_ISSUER=ISSUER, IPT_FHIR_JWT_AUDIENCE=AUDIENCE, IPT_FHIR_HOST="127.0.0.1",
                         IPT_FHIR_DB_POOL_SIZE="4", IPT_FHIR_LOG_LEVEL="info")
        instances = [ServedProcess(env, work / f"server-{i}.log", workers=2) for i in range(2)]
        try:
            for instance in instances:
                instance.wait_ready()
            yield instances, token
        finally:
            codes = [instance.stop() for instance in instances]
    assert codes == [0, 0], f"servers did not shut down cleanly on SIGTERM: {codes}"


def _server_errors(instances) -> str:  # noqa: ANN001
    lines = []
    for instance in instances:
        lines += [line[:300] + " … " + line[-1500:] for line in instance.log.read_text(errors="replace").splitlines()
                  if '"level": "error"' in line]
    return "\n".join(lines[-5:])


def _client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base}/fhir", timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})


def test_version_aware_updates_have_one_winner_per_version_and_lose_nothing(cluster):
    instances, token = cluster
    with _client(instances[0].url, token) as c:
        created = c.post("/Patient", json={"resourceType": "Patient", "active": True,
                                           "name": [{"family": "Counter"}], "multipleBirthInteger": 0})
        assert created.status_code == 201, created.text
        pid = created.json()["id"]

    winners: list[int] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def increment(worker: int) -> None:
        with _client(instances[worker % 2].url, token) as c:
            done = 0
            while done < INCREMENTS_PER_CLIENT:
                current = c.get(f"/Patient/{pid}")
                assert current.status_code == 200, current.text
                body = current.json()
                body["multipleBirthInteger"] += 1
                r = c.put(f"/Patient/{pid}", json=body, headers={"If-Match": current.headers["etag"]})
                with lock:
                    statuses[r.status_code] += 1
                if r.status_code == 200:
                    with lock:
                        winners.append(int(r.json()["meta"]["versionId"]))
                    done += 1
                else:
                    assert r.status_code in (409, 412), f"{r.status_code} {r.text}\n{_server_errors(instances)}"

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(increment, range(CLIENTS)))
    elapsed = time.perf_counter() - started

    successes = CLIENTS * INCREMENTS_PER_CLIENT
    assert len(winners) == successes
    assert sorted(winners) == list(range(2, successes + 2)), "two writers won the same version"
    with _client(instances[1].url, token) as c:
        final = c.get(f"/Patient/{pid}")
        history = c.get(f"/Patient/{pid}/_history", params={"_count": 1000}).json()
    assert final.json()["meta"]["versionId"] == str(successes + 1)
    assert final.json()["multipleBirthInteger"] == successes, "an update was lost"
    assert history["total"] == successes + 1 if "total" in history else len(history["entry"]) == successes + 1
    attempts = sum(statuses.values())
    print(f"\n{successes} increments by {CLIENTS} clients over 2 instances x 2 workers: {attempts} PUTs "
          f"({dict(statuses)}) in {elapsed:.1f} s")


def test_conditional_create_is_unique_across_instances(cluster):
    instances, token = cluster
    for attempt in range(3):
        identifier = f"urn:oid:2.16.840.1.113883.19.5|scale-{uuid.uuid4().hex[:8]}"
        system, value = identifier.split("|")
        body = {"resourceType": "Patient", "identifier": [{"system": system, "value": value}],
                "name": [{"family": "Unique"}]}

        def create(worker: int) -> int:
            with _client(instances[worker % 2].url, token) as c:
                return c.post("/Patient", json=body, headers={"If-None-Exist": f"identifier={identifier}"}).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = Counter(pool.map(create, range(16)))
        assert codes[201] == 1 and codes[200] == 15, f"{codes}\n{_server_errors(instances)}"
        with _client(instances[attempt % 2].url, token) as c:
            found = c.get("/Patient", params={"identifier": identifier, "_total": "accurate"}).json()
        assert len(found.get("entry", [])) == 1


def test_metrics_add_up_over_the_worker_processes(cluster):
    instances, token = cluster
    with _client(instances[0].url, token) as c:
        pid = c.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Metric"}]}).json()["id"]
        for _ in range(20):  # new connections, so both workers of the instance serve some of them
            with _client(instances[0].url, token) as fresh:
                assert fresh.get(f"/Patient/{pid}").status_code == 200
    text = httpx.get(f"{instances[0].url}/metrics").text
    reads = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("ipt_fhir_requests_total{") and 'interaction="read"' in line
                and 'resource_type="Patient"' in line and 'status="200"' in line)
    assert reads >= 20


def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(cluster):
    instances, token = cluster
    target = instances[1]
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {"resourceType": "Patient",
                                                                   "name": [{"family": f"Drain{i}"}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(300)]

    def slow_transaction() -> httpx.Response:
        with _client(target.url, token) as c:
            return c.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})

    code, response, after_signal = target.stop_during(slow_transaction, after=0.3)
    assert code == 0
    assert response.status_code == 200, "the in-flight transaction was cut off by the shutdown"
    assert after_signal > 0, "answered before the signal: nothing was in flight"
    log = target.log.read_text()
    assert "ipt-fhir worker stopped" in log and "Traceback" not in log
