"""patient/ scopes: patient A's token never sees patient B — through read, search, include, revinclude,
history, $everything, compartment search, batch or transaction."""
from __future__ import annotations

import pytest

from .conftest import ADMIN, create, observation, patient


@pytest.fixture
def world(secure_client, keys):
    c = secure_client
    a, b = patient(c, keys, "Alpha"), patient(c, keys, "Bravo")
    oa = observation(c, keys, a["id"], focus=[{"reference": f"Patient/{b['id']}"}])
    ob = observation(c, keys, b["id"])
    return {"a": a["id"], "b": b["id"], "oa": oa["id"], "ob": ob["id"],
            "h": keys.headers("patient/*.rs patient/Observation.c", patient=a["id"])}


def _ids(bundle: dict) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["resource"]["resourceType"] != "OperationOutcome"}


def test_read_of_other_patients_data_is_refused(secure_client, world):
    c, h = secure_client, world["h"]
    assert c.get(f"/fhir/Observation/{world['oa']}", headers=h).status_code == 200
    assert c.get(f"/fhir/Patient/{world['a']}", headers=h).status_code == 200
    assert c.get(f"/fhir/Observation/{world['ob']}", headers=h).status_code == 403
    assert c.get(f"/fhir/Observation/{world['ob']}/_history/1", headers=h).status_code == 403
    assert c.get(f"/fhir/Patient/{world['b']}", headers=h).status_code == 403


def test_search_include_and_revinclude_stay_in_the_compartment(secure_client, world):
    c, h, a, b = secure_client, world["h"], world["a"], world["b"]
    ids = _ids(c.get("/fhir/Observation", headers=h).json())
    assert ids == {f"Observation/{world['oa']}"}
    assert _ids(c.get(f"/fhir/Observation?subject=Patient/{b}", headers=h).json()) == set()
    ids = _ids(c.get("/fhir/Observation?_include=Observation:focus&_include=Observation:subject", headers=h).json())
    assert f"Patient/{b}" not in ids and f"Patient/{a}" in ids
    ids = _ids(c.get("/fhir/Patient?_revinclude=Observation:subject", headers=h).json())
    assert ids == {f"Patient/{a}", f"Observation/{world['oa']}"}
    ids = _ids(c.get("/fhir?_type=Patient,Observation", headers=h).json())
    assert ids == {f"Patient/{a}", f"Observation/{world['oa']}"}
    bundle = c.get("/fhir/Observation", headers=h).json()
    assert bundle["total"] == 1


def test_compartment_search_and_everything_of_another_patient_are_refused(secure_client, world):
    c, h, a, b = secure_client, world["h"], world["a"], world["b"]
    assert c.get(f"/fhir/Patient/{b}/Observation", headers=h).status_code == 403
    assert c.get(f"/fhir/Patient/{b}/$everything", headers=h).status_code == 403
    assert c.get(f"/fhir/Patient/{b}/*", headers=h).status_code == 403
    assert c.post(f"/fhir/Patient/{b}/Observation/_search", headers=h).status_code == 403
    assert c.post(f"/fhir/Patient/{b}/_search", headers=h).status_code == 403
    assert _ids(c.post(f"/fhir/Patient/{a}/_search", headers=h).json()) == {f"Patient/{a}", f"Observation/{world['oa']}"}
    assert _ids(c.get(f"/fhir/Patient/{a}/*", headers=h).json()) == {f"Patient/{a}", f"Observation/{world['oa']}"}
    r = c.get(f"/fhir/Patient/{a}/$everything", headers=h)
    assert r.status_code == 200, r.text
    ids = _ids(r.json())
    assert f"Patient/{a}" in ids and f"Observation/{world['oa']}" in ids
    assert not any(world["b"] in i or world["ob"] in i for i in ids)


def test_a_patient_token_sees_its_own_patient_not_those_linking_to_it_in_reads_and_searches_alike(
        secure_client, keys, world):
    """A Patient linking to the token's patient is in its compartment (Patient/[id]/Patient finds it), but
    a patient/ token's access is to its own Patient: the search leaves the linking one out, so the total
    counts exactly the entries, and a read refuses it."""
    c, h, a = secure_client, world["h"], world["a"]
    linked = create(c, keys, {"resourceType": "Patient", "link": [{"other": {"reference": f"Patient/{a}"},
                                                                     "type": "seealso"}]})
    compartment = c.get(f"/fhir/Patient/{a}/Patient", headers=keys.headers(ADMIN))
    assert compartment.status_code == 200 and _ids(compartment.json()) == {f"Patient/{a}", f"Patient/{linked['id']}"}
    r = c.get("/fhir/Patient", headers=h)
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == {f"Patient/{a}"} and r.json()["total"] == 1
    assert c.get(f"/fhir/Patient/{linked['id']}", headers=h).status_code == 403


def test_history_shows_only_the_compartment(secure_client, world):
    c, h = secure_client, world["h"]
    assert c.get(f"/fhir/Observation/{world['ob']}/_history", headers=h).status_code == 403
    for path in ("/fhir/Observation/_history", "/fhir/_history"):
        r = c.get(path, headers=h)
        assert r.status_code == 200, r.text
        ids = _ids(r.json())
        assert f"Observation/{world['ob']}" not in ids and f"Patient/{world['b']}" not in ids
        assert f"Observation/{world['oa']}" in ids
        # no count that would include patient B's versions
        assert "total" not in r.json() and "last" not in {l["relation"] for l in r.json()["link"]}


def test_a_restricted_history_page_is_filled_with_what_the_token_may_see(secure_client, keys, world):
    """Filtering one stored page of everyone's history left a patient's pages empty or short, with next
    links; the page reads on past hidden entries, and its next link goes on from where it stopped."""
    c, h, b = secure_client, world["h"], world["b"]
    for _ in range(6):  # newer than A's entries: the first pages of the system history are all B's
        observation(c, keys, b)
    seen: list[str] = []
    url = "/fhir/_history?_count=2"
    for _ in range(20):
        page = c.get(url, headers=h).json()
        entries = [e for e in page.get("entry", []) if "resource" in e]
        if not any(l["relation"] == "next" for l in page["link"]):
            seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]
            break
        assert len(entries) == 2, page  # full pages until the last
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]
        url = next(l["url"] for l in page["link"] if l["relation"] == "next").split("testserver", 1)[1]
    ours = {f"{rt}/{rid}" for rt, rid in c.app.state.ipt_conformance.resources}  # the server's own: no patient's
    assert set(seen) - ours == {f"Patient/{world['a']}", f"Observation/{world['oa']}"}
    assert len(seen) == len(set(seen))


def test_transaction_and_batch_entries_are_checked(secure_client, world):
    c, h, b = secure_client, world["h"], world["b"]
    read_b = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "GET", "url": f"Observation/{world['ob']}"}}]}
    r = c.post("/fhir", json=read_b, headers=h)
    assert r.status_code == 403, r.text
    write_b = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "request": {"method": "POST", "url": "Observation"},
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": f"Patient/{b}"}}}]}
    r = c.post("/fhir", json=write_b, headers=h)
    assert r.status_code == 403, r.text
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{world['ob']}"}},
        {"request": {"method": "GET", "url": f"Observation/{world['oa']}"}},
        {"request": {"method": "GET", "url": "Observation"}}]}
    r = c.post("/fhir", json=batch, headers=h)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"].startswith("403")
    assert entries[1]["response"]["status"].startswith("200")
    assert _ids(entries[2]["resource"]) == {f"Observation/{world['oa']}"}


@pytest.mark.parametrize("url", ["Observation/{ob}", "Observation/unknown", "Observation/{ob}/_history/1",
                                 "Observation/unknown/_history/1"])
def test_a_batch_read_without_the_types_scope_is_refused_whether_or_not_the_resource_exists(
        secure_client, keys, world, url):
    """As GET [type]/[id] does: the scope is checked before the lookup, so a 404 cannot tell a caller
    that may not read the type which of its resources exist."""
    c = secure_client
    h = keys.headers("patient/Patient.rs", patient=world["a"])
    target = url.format(ob=world["ob"])
    assert c.get(f"/fhir/{target}", headers=h).status_code == 403
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": target}}]}
    r = c.post("/fhir", json=batch, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("403")


def test_patient_token_cannot_write_outside_its_compartment(secure_client, world):
    c, h = secure_client, world["h"]
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{world['b']}"}}
    assert c.post("/fhir/Observation", json=body, headers=h).status_code == 403
    body["subject"]["reference"] = f"Patient/{world['a']}"
    assert c.post("/fhir/Observation", json=body, headers=h).status_code == 201


def test_a_reference_to_another_servers_patient_with_the_same_id_is_not_the_compartment(secure_client, keys, world):
    c, h, a = secure_client, world["h"], world["a"]
    foreign = observation(c, keys, a, subject={"reference": f"http://other.example/fhir/Patient/{a}"})
    assert c.get(f"/fhir/Observation/{foreign['id']}", headers=h).status_code == 403
    found = c.get("/fhir/Observation", params={"_id": foreign["id"]}, headers=h).json()
    assert not _ids(found)
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"http://other.example/fhir/Patient/{a}"}}
    assert c.post("/fhir/Observation", json=body, headers=h).status_code == 403


def test_patient_scope_without_patient_claim_is_refused(secure_client, keys, world):
    r = secure_client.get("/fhir/Observation", headers=keys.headers("patient/*.rs"))
    assert r.status_code == 403


def test_conditional_create_answers_with_its_match_only_if_the_token_may_read_it(secure_client, keys, world):
    """The 200 of a conditional create carries the resource it matched: that is a read, and B's
    Observation was handed to A's token in full."""
    c, h, a = secure_client, world["h"], world["a"]
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{a}"}}
    r = c.post("/fhir/Observation", json=body, headers={**h, "If-None-Exist": f"_id={world['ob']}"})
    assert r.status_code == 403, r.text
    assert "Bravo" not in r.text and world["b"] not in r.text
    own = c.post("/fhir/Observation", json=body, headers={**h, "If-None-Exist": f"_id={world['oa']}"})
    assert own.status_code == 200 and own.json()["id"] == world["oa"]
    create_only = keys.headers("user/Observation.c")
    r = c.post("/fhir/Observation", json=body, headers={**create_only, "If-None-Exist": f"_id={world['oa']}"})
    assert r.status_code == 403  # no read scope at all


def test_chains_and_has_look_only_into_what_the_token_may_search(secure_client, keys, world):
    """A chain or _has filters on the resources it reaches: tested against B's data, a yes/no answer told
    A's token what B's resources hold."""
    c, h, a, b = secure_client, world["h"], world["a"], world["b"]
    # oa is A's and has B in its focus: a chain through focus must not see B's name
    assert _ids(c.get("/fhir/Observation?focus:Patient.name=Bravo", headers=h).json()) == set()
    own = _ids(c.get("/fhir/Observation?subject:Patient.name=Alpha", headers=h).json())
    assert own == {f"Observation/{world['oa']}"}
    # B's Observation refers to B: `_has` through it must not reveal anything about it
    create(c, keys, {"resourceType": "Observation", "status": "final", "code": {"text": "telltale"},
                     "subject": {"reference": f"Patient/{b}"}, "focus": [{"reference": f"Patient/{a}"}]})
    assert _ids(c.get("/fhir/Patient?_has:Observation:focus:code:text=telltale", headers=h).json()) == set()
    r = c.get("/fhir/Patient?_has:AuditEvent:patient:outcome=0", headers=keys.headers("user/*.rs"))
    assert r.status_code == 403  # AuditEvent is no type `*` lets a token search


def test_a_chain_does_not_look_into_sensitive_resources_without_the_sensitive_scope(secure_client, keys):
    from .conftest import SENSITIVE

    c = secure_client
    p = patient(c, keys, "Chained")
    psythpn = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSYTHPN"}
    note = observation(c, keys, p["id"], meta={"security": [psythpn]}, code={"text": "secret"})
    assert note["id"]
    query = f"/fhir/Patient?_id={p['id']}&_has:Observation:subject:code:text=secret"
    assert _ids(c.get(query, headers=keys.headers("user/*.rs")).json()) == set()
    assert _ids(c.get(query, headers=keys.headers(f"user/*.rs {SENSITIVE}")).json()) == {f"Patient/{p['id']}"}


def test_a_412_for_several_matches_does_not_count_them_to_a_token(secure_client, keys, world):
    """The count takes in resources the token may not see (B's Observation): it is not given."""
    c, h, a = secure_client, world["h"], world["a"]
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{a}"}}
    r = c.post("/fhir/Observation", json=body, headers={**h, "If-None-Exist": "code=http://loinc.org|44261-6"})
    assert r.status_code == 412, r.text
    diagnostics = r.json()["issue"][0]["diagnostics"]
    assert "more than one" in diagnostics and "2" not in diagnostics
