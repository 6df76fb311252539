"""$export: `patient` values and Group members read as references. A reference names a patient of this
server when it is relative (`Patient/id`, versioned or not) or an absolute URL under this server's own
FHIR base, the base the client called; an absolute URL under another server's base names that server's
patient, so none here, whatever its id."""
from __future__ import annotations

import pytest

from tests.bulk.conftest import ASYNC, LENIENT, export, ids_by_type, patient_parameters, read_export

OWN = "http://testserver/fhir"  # the base the test client calls
OTHER = "http://other.example/fhir"
TYPES = "Patient,Encounter"  # each patient and its Encounter; Groups are in the compartments too

@pytest.fixture
def group_by_references(group_of_two):
    """Group refs lists a by this server's URL, b by a versioned reference, and the other server's c."""
    group_of_two.put("/fhir/Group/refs", json={
        "resourceType": "Group", "id": "refs", "type": "person", "actual": True,
        "member": [{"entity": {"reference": f"{OWN}/Patient/a"}},
                   {"entity": {"reference": "Patient/b/_history/1"}},
                   {"entity": {"reference": f"{OTHER}/Patient/c"}}]})
    assert group_of_two.get("/fhir/Group/refs").status_code == 200
    return group_of_two


def _kick_off(client, path: str, references: list[str], *, method: str = "GET", headers: dict = ASYNC):
    """An export of patients and their Encounters naming `references` as `patient`: in a GET's query
    (comma-separated), or as a POST's valueReference parameters."""
    if method == "GET":
        return client.get(path, params={"patient": ",".join(references), "_type": TYPES}, headers=headers)
    body = patient_parameters(*references)
    body["parameter"].append({"name": "_type", "valueString": TYPES})
    return client.post(path, json=body, headers=headers)


@pytest.mark.parametrize("reference", ["b", "Patient/b", f"{OWN}/Patient/b", f"{OWN}/Patient/b/_history/1"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_patient_url_under_this_servers_base_exports_that_patient(group_of_two, reference, method):
    exported = read_export(group_of_two, _kick_off(group_of_two, "/fhir/Patient/$export", [reference],
                                                    method=method))
    assert ids_by_type(exported) == {"Patient": {"b"}, "Encounter": {"enc-b"}}


@pytest.mark.parametrize("path, where", [("/fhir/Patient/$export", "on this server"),
                                         ("/fhir/Group/g/$export", "a member of Group/g")])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_patient_url_under_another_base_is_refused_unless_lenient_then_dropped(group_of_two, path, where,
                                                                                 method):
    """b is on this server and a member of g, but the URL names the other server's b: as a patient not on
    this server, a 400 on `patient`, or under Prefer: handling=lenient left out of the export."""
    foreign = f"{OTHER}/Patient/b"
    r = _kick_off(group_of_two, path, ["Patient/a", foreign], method=method)
    assert r.status_code == 400, r.text
    [issue] = r.json()["issue"]
    assert issue["expression"] == ["patient"]
    assert f"patient names {foreign}: each must be {where}" in issue["diagnostics"]

    lenient = _kick_off(group_of_two, path, ["Patient/a", foreign], method=method, headers=LENIENT)
    assert ids_by_type(read_export(group_of_two, lenient)) == {"Patient": {"a"}, "Encounter": {"enc-a"}}


def test_this_servers_base_is_the_one_the_client_called(group_of_two):
    """Behind a proxy (X-Forwarded-*) the own base is the proxy's; the server's direct URL is then
    another base."""
    proxied = {**ASYNC, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "proxy.example.org"}
    r = _kick_off(group_of_two, "/fhir/Patient/$export", ["https://proxy.example.org/fhir/Patient/a"],
                  headers=proxied)
    assert ids_by_type(read_export(group_of_two, r)) == {"Patient": {"a"}, "Encounter": {"enc-a"}}
    r = _kick_off(group_of_two, "/fhir/Patient/$export", [f"{OWN}/Patient/a"], headers=proxied)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["patient"]


@pytest.mark.parametrize("reference", [f"{OWN}/Observation/a", f"{OTHER}/Observation/a", "Observation/9/Patient/a",
                                       f"{OWN}/Group/g/Patient/a", "Patient/a/_history", "Patient/a/_history/",
                                       "Patient/a/b"])
def test_a_url_to_another_type_is_no_patient_under_either_base(group_of_two, reference):
    """Nor is a reference with more segments than [type]/[id](/_history/[version]) whose last two happen to
    read Patient/a."""
    for headers in (ASYNC, LENIENT):  # lenient handling does not excuse it
        r = _kick_off(group_of_two, "/fhir/Patient/$export", [reference], headers=headers)
        assert r.status_code == 400, r.text
        [issue] = r.json()["issue"]
        assert issue["expression"] == ["patient"] and "is not a reference to a Patient" in issue["diagnostics"]


def test_group_members_by_this_servers_url_or_a_version_are_exported_another_servers_not(group_by_references):
    exported = export(group_by_references, f"/fhir/Group/refs/$export?_type={TYPES}")
    assert ids_by_type(exported) == {"Patient": {"a", "b"}, "Encounter": {"enc-a", "enc-b"}}


def test_the_kick_off_reads_group_membership_as_the_export_does(group_by_references):
    """Naming members checks them against the Group's references read as the export reads them: a and b
    are members; c, on this server, is not (the member reference names the other server's c)."""
    client = group_by_references
    named = read_export(client, _kick_off(client, "/fhir/Group/refs/$export", ["Patient/a", "Patient/b"]))
    assert ids_by_type(named) == {"Patient": {"a", "b"}, "Encounter": {"enc-a", "enc-b"}}

    r = _kick_off(client, "/fhir/Group/refs/$export", ["Patient/c"])
    assert r.status_code == 400, r.text
    [issue] = r.json()["issue"]
    assert issue["expression"] == ["patient"]
    assert "patient names Patient/c: each must be a member of Group/refs" in issue["diagnostics"]
