"""A reference to another server is not a reference to ours (search.html#reference).

`[type]/[id]` and `[id]` mean "the logical [id] of a resource ... using a local reference (i.e. a relative
reference)"; an absolute URL at this server's own base is the same reference written out. So an
Observation about http://other.org/fhir/Patient/zz is not about our Patient/zz: not in searches, chains,
_include, _revinclude, _has, the compartment, $everything or the audit record's patients. Searching by
that absolute URL still finds it. Every case runs through the text SQL and (with a `code:text` criterion,
which only the SQLAlchemy builder handles) through the SQLAlchemy builder.
"""
from __future__ import annotations

import pytest

from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings

from .harness import put

BASE = "http://testserver/fhir"
FOREIGN = "http://other.org/fhir/Patient/zz"
BUILDERS = ["", "&code:text=phq"]  # text SQL; SQLAlchemy (TextSql leaves :text to it)


def observation(oid: str, subject: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "PHQ-9"},
            "subject": {"reference": subject}}


@pytest.fixture
def seeded(database):
    put(database, {"resourceType": "Patient", "id": "zz", "name": [{"family": "Zed"}],
                   "generalPractitioner": [{"reference": "http://other.org/fhir/Practitioner/dr"}]})
    put(database, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Local"}],
                   "generalPractitioner": [{"reference": "Practitioner/dr"}]})
    put(database, {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Weiss"}]})
    put(database, observation("foreign", FOREIGN))
    put(database, observation("foreign-version", FOREIGN + "/_history/2"))
    put(database, observation("local-zz", "Patient/zz"))
    put(database, observation("own-base", f"{BASE}/Patient/p1"))
    put(database, observation("relative", "Patient/p1"))
    return database


@pytest.fixture
def client(seeded, database_url, tmp_path):
    from fastapi.testclient import TestClient

    settings = Settings(database_url=database_url, bulk_dir=str(tmp_path / "bulk"), audit="on")
    with TestClient(create_app(settings, seeded), base_url="http://testserver") as c:
        yield c


def found(client, path: str) -> set[tuple[str, str, str]]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return {(e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"])
            for e in r.json().get("entry", []) if e["search"]["mode"] != "outcome"}


def ids(client, path: str) -> set[str]:
    return {rid for mode, _, rid in found(client, path) if mode == "match"}


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("criteria", ["subject=Patient/zz", "subject=zz", "subject:Patient=zz", "patient=zz",
                                      "patient=Patient/zz", f"subject={BASE}/Patient/zz", "subject.name=Zed",
                                      "subject:Patient.name=Zed", "patient._id=zz"])
def test_a_local_reference_search_does_not_match_another_servers_reference(client, criteria, builder):
    assert ids(client, f"/fhir/Observation?{criteria}{builder}") == {"local-zz"}


@pytest.mark.parametrize("builder", BUILDERS)
def test_the_absolute_url_of_the_other_server_still_matches(client, builder):
    assert ids(client, f"/fhir/Observation?subject={FOREIGN}{builder}") == {"foreign", "foreign-version"}


@pytest.mark.parametrize("builder", BUILDERS)
def test_a_reference_at_the_own_base_is_local(client, builder):
    assert ids(client, f"/fhir/Observation?subject=Patient/p1{builder}") == {"own-base", "relative"}
    assert ids(client, f"/fhir/Observation?subject={BASE}/Patient/p1{builder}") == {"own-base", "relative"}
    assert ids(client, f"/fhir/Observation?subject.name=Local{builder}") == {"own-base", "relative"}


def test_include_does_not_fetch_ours_for_a_foreign_reference(client):
    got = found(client, "/fhir/Observation?_id=foreign,own-base&_include=Observation:subject")
    assert ("include", "Patient", "zz") not in got and ("include", "Patient", "p1") in got
    got = found(client, "/fhir/Patient?_id=zz,p1&_include=Patient:general-practitioner")
    assert {x for x in got if x[0] == "include"} == {("include", "Practitioner", "dr")}
    got = found(client, "/fhir/Observation?_id=local-zz&_include=Observation:subject"
                        "&_include:iterate=Patient:general-practitioner")
    assert {x for x in got if x[0] == "include"} == {("include", "Patient", "zz")}


def test_revinclude_leaves_out_references_to_another_server(client):
    got = found(client, "/fhir/Patient?_id=zz&_revinclude=Observation:subject")
    assert {x for x in got if x[0] == "include"} == {("include", "Observation", "local-zz")}
    got = found(client, "/fhir/Practitioner?_id=dr&_revinclude=Patient:general-practitioner")
    assert {x for x in got if x[0] == "include"} == {("include", "Patient", "p1")}


@pytest.mark.parametrize("builder", ["", "&_has:Observation:subject:code:text=phq"])
def test_has_counts_only_local_references(client, builder):
    assert ids(client, f"/fhir/Patient?_has:Observation:subject:_id=foreign{builder}") == set()
    assert ids(client, f"/fhir/Patient?_has:Observation:subject:_id=local-zz{builder}") == {"zz"}
    assert ids(client, f"/fhir/Patient?_has:Observation:patient:_id=own-base{builder}") == {"p1"}


@pytest.mark.parametrize("builder", ["", "?code:text=phq"])
def test_the_compartment_holds_only_local_references(client, builder):
    assert ids(client, f"/fhir/Patient/zz/Observation{builder}") == {"local-zz"}
    assert ids(client, f"/fhir/Patient/p1/Observation{builder}") == {"own-base", "relative"}


def test_everything_holds_only_local_references(client):
    assert ids(client, "/fhir/Patient/zz/$everything") == {"zz", "local-zz"}  # not Practitioner/dr either
    assert ids(client, "/fhir/Patient/p1/$everything") == {"p1", "own-base", "relative", "dr"}


def test_the_audit_record_names_only_our_patients(client, seeded):
    import sqlalchemy as sa

    from ipt_fhir.fhir.jsonio import load_stored
    from ipt_fhir.store.tables import resource_table as r

    assert ids(client, "/fhir/Observation?_id=foreign,own-base") == {"foreign", "own-base"}
    with seeded.read() as conn:
        events = [load_stored(row[0]) for row in conn.execute(
            sa.select(r.c.content).where(r.c.resource_type == "AuditEvent"))]
    [search] = [e for e in events if e["subtype"][0]["code"] == "search-type"]
    patients = {ent["what"]["reference"] for ent in search["entity"]
                if ent.get("what", {}).get("reference", "").startswith("Patient/")}
    assert patients == {"Patient/p1"}
