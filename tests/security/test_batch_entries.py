"""History and operation entries of a batch get the scope, compartment and audit treatment of the
standalone requests (IPT_FHIR_AUTH=smart)."""
from __future__ import annotations

from .conftest import ADMIN, audit_events, observation, patient


def _batch(*entries: tuple[str, str]) -> dict:
    return {"resourceType": "Bundle", "type": "batch",
            "entry": [{"request": {"method": m, "url": u}} for m, u in entries]}


def test_entries_are_checked_as_standalone_requests(secure_client, keys):
    c = secure_client
    a, b = patient(c, keys, "Alpha")["id"], patient(c, keys, "Bravo")["id"]
    ob = observation(c, keys, b)["id"]
    oa = observation(c, keys, a)["id"]
    h = keys.headers("patient/*.rs", patient=a)
    urls = [f"Observation/{ob}/_history", f"Observation/{oa}/_history", f"Patient/{b}/$everything",
            f"Patient/{a}/$everything", f"Observation/{ob}/$validate", f"Observation/{oa}/$validate", "_history",
            "metadata"]
    r = c.post("/fhir", json=_batch(*[("GET", u) for u in urls]), headers=h)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    for url, entry in zip(urls, entries):
        standalone = c.get(f"/fhir/{url}", headers=h)
        assert entry["response"]["status"].split()[0] == str(standalone.status_code), url
    assert [e["response"]["status"].split()[0] for e in entries] == \
        ["403", "200", "403", "200", "403", "200", "200", "200"]
    history = {e["resource"]["id"] for e in entries[6]["resource"].get("entry", [])}
    assert ob not in history and b not in history and oa in history
    # a token without any search scope gets no system history, in a batch as on its own
    h = keys.headers("user/Observation.r")
    r = c.post("/fhir", json=_batch(("GET", "_history"), ("GET", f"Observation/{oa}/_history")), headers=h)
    assert [e["response"]["status"].split()[0] for e in r.json()["entry"]] == \
        [str(c.get("/fhir/_history", headers=h).status_code), "200"] == ["403", "200"]


def test_entries_are_audited_as_standalone_requests(secure_client, keys, database):
    c = secure_client
    a = patient(c, keys, "Alpha")["id"]
    h = keys.headers(ADMIN)
    before = len(audit_events(database))
    r = c.post("/fhir", json=_batch(("GET", f"Patient/{a}/_history"), ("GET", f"Patient/{a}/$validate"),
                                    ("GET", "metadata")), headers=h)
    assert r.status_code == 200, r.text
    events = audit_events(database)[before:]
    subtypes = sorted(e["subtype"][0]["code"] for e in events)
    assert subtypes == ["history-instance", "operation"]
    for e in events:
        assert f"Patient/{a}" in {x["what"]["reference"] for x in e.get("entity", []) if "what" in x}


def _subtype_and_patients(events: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
    """Each event's interaction (subtype code) and the patients it names (entities in the Patient role,
    object-role 1), sorted: what an event of a batch entry must share with that of its standalone request."""
    return sorted((e["subtype"][0]["code"],
                   tuple(sorted(x["what"]["reference"] for x in e.get("entity", [])
                                if "what" in x and x.get("role", {}).get("code") == "1")))
                  for e in events)


def test_read_and_search_entries_are_audited_as_standalone_requests(secure_client, keys, database):
    """A batch's reads and searches (type, system and compartment) leave the AuditEvents the same GETs
    sent one by one leave: one per entry, under the standalone interaction, naming the same patients."""
    c = secure_client
    a = patient(c, keys, "Alpha")["id"]
    b = patient(c, keys, "Bravo")["id"]
    observation(c, keys, a)
    observation(c, keys, b)
    h = keys.headers(ADMIN)
    urls = [f"Patient/{a}", f"Observation?patient={a}", "?_type=Observation", f"Patient/{a}/Observation"]
    before = len(audit_events(database))
    r = c.post("/fhir", json=_batch(*[("GET", u) for u in urls]), headers=h)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"].split()[0] for e in r.json()["entry"]] == ["200"] * 4
    batched = audit_events(database)[before:]
    before += len(batched)
    for url in urls:
        assert c.get(f"/fhir/{url}", headers=h).status_code == 200, url
    standalone = audit_events(database)[before:]
    assert _subtype_and_patients(standalone) == sorted([
        ("read", (f"Patient/{a}",)), ("search-type", (f"Patient/{a}",)),
        ("search-system", (f"Patient/{a}",)), ("search-system", (f"Patient/{b}",)),  # one per patient (BALP)
        ("search-type", (f"Patient/{a}",))])
    assert _subtype_and_patients(batched) == _subtype_and_patients(standalone)


def test_a_transaction_refused_for_an_entrys_scope_answers_with_its_www_authenticate(secure_client, keys):
    """An entry's 403 fails the transaction, and its WWW-Authenticate (RFC 6750 insufficient_scope) describes
    the Bundle's own answer too, so it is kept, while resource headers such as an entry's ETag are not."""
    r = secure_client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Observation?_id=x"}}]}, headers=keys.headers("user/Patient.rs"))
    assert r.status_code == 403, r.text
    assert r.headers["www-authenticate"].startswith("Bearer") and "insufficient_scope" in r.headers["www-authenticate"]
    assert "etag" not in r.headers
