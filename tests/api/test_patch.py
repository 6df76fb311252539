"""PATCH with JSON Patch and FHIRPath Patch; the result is validated like an update."""
from __future__ import annotations

from tests.api.test_crud import patient

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def fhirpath_patch(*operations: list[dict]) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": op} for op in operations]}


def test_json_patch_replaces_and_bumps_version(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "replace", "path": "/birthDate", "value": "1980-01-01"}],
                     headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1980-01-01" and r.headers["etag"] == 'W/"2"'


def test_fhirpath_patch_add_replace_delete(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    body = fhirpath_patch(
        [{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
         {"name": "name", "valueString": "gender"}, {"name": "value", "valueCode": "female"}],
        [{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.birthDate"},
         {"name": "value", "valueDate": "1990-05-05"}],
        [{"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.name[0].given[0]"}],
    )
    r = client.patch(f"/fhir/Patient/{rid}", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["gender"] == "female" and result["birthDate"] == "1990-05-05"
    assert "given" not in result["name"][0]


def test_patch_with_stale_if_match_is_412(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "remove", "path": "/birthDate"}],
                     headers={**JSON_PATCH, "If-Match": 'W/"7"'})
    assert r.status_code == 412


def test_patch_producing_an_invalid_resource_is_422_and_changes_nothing(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "replace", "path": "/birthDate", "value": "yesterday"}],
                     headers=JSON_PATCH)
    assert r.status_code == 422
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{rid}").json()["meta"]["versionId"] == "1"


def test_patch_that_cannot_apply_is_422_and_malformed_patch_is_400(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    missing = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "add", "path": "/active", "value": True},
                                                       {"op": "remove", "path": "/gender"}], headers=JSON_PATCH)
    assert missing.status_code == 422
    issue = missing.json()["issue"][0]
    assert issue["expression"] == ["Patient.gender"]  # the failing operation's path, as FHIRPath
    assert issue["diagnostics"].startswith("JSON Patch operation 1 (remove /gender)")
    assert "{" not in issue["diagnostics"]
    assert client.get(f"/fhir/Patient/{rid}").json().get("active") is None  # all or nothing
    beyond = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "replace", "path": "/telecom/0/value", "value": "x"}],
                          headers=JSON_PATCH)  # the library's message holds the whole resource: it stays out
    assert beyond.status_code == 422 and "Chalmers" not in beyond.text
    assert "{" not in beyond.json()["issue"][0]["diagnostics"]
    failed_test = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "test", "path": "/name/0/family", "value": "X"}],
                               headers=JSON_PATCH)
    assert failed_test.status_code == 422 and failed_test.json()["issue"][0]["expression"] == ["Patient.name[0].family"]
    assert "<class" not in failed_test.text
    malformed = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "jump", "path": "/x"}], headers=JSON_PATCH)
    assert malformed.status_code == 400
    assert malformed.json()["issue"][0]["expression"] == ["Patient.x"]
    not_parameters = client.patch(f"/fhir/Patient/{rid}", json={"resourceType": "Patient"},
                                  headers={"Content-Type": "application/fhir+json"})
    assert not_parameters.status_code == 400  # a supported media type: the body is wrong, not its type
    assert not_parameters.json()["issue"][0]["expression"] == ["Patient"]
    partial = client.patch(f"/fhir/Patient/{rid}", json={"active": True}, headers={"Content-Type": "application/json"})
    assert partial.status_code == 400  # a merge patch, as some clients send: the two forms taken are named
    assert "application/json-patch+json" in partial.json()["issue"][0]["diagnostics"]
    assert "Merge Patch" in partial.json()["issue"][0]["diagnostics"]
    xml = client.patch(f"/fhir/Patient/{rid}", content=b"<Parameters/>", headers={"Content-Type": "application/fhir+xml"})
    assert xml.status_code == 415
    assert "application/json-patch+json" in xml.json()["issue"][0]["diagnostics"]  # both patch formats named


def test_patch_of_missing_resource_is_404(client):
    r = client.patch("/fhir/Patient/nope", json=[{"op": "remove", "path": "/gender"}], headers=JSON_PATCH)
    assert r.status_code == 404


def test_patch_cannot_change_the_id(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = client.patch(f"/fhir/Patient/{rid}", json=[{"op": "replace", "path": "/id", "value": "other"}],
                     headers=JSON_PATCH)
    assert r.status_code == 422


def test_fhirpath_patch_add_creates_a_list_for_repeating_elements(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    body = fhirpath_patch([
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "identifier"},
        {"name": "value", "part": [{"name": "system", "valueUri": "urn:oid:1.2.3"}, {"name": "value", "valueString": "42"}]}])
    r = client.patch(f"/fhir/Patient/{rid}", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert r.json()["identifier"] == [{"system": "urn:oid:1.2.3", "value": "42"}]


def test_fhirpath_patch_insert_and_move(client):
    rid = client.post("/fhir/Patient", json=patient(name=[{"given": ["a", "b"]}])).json()["id"]
    body = fhirpath_patch(
        [{"name": "type", "valueCode": "insert"}, {"name": "path", "valueString": "Patient.name[0].given"},
         {"name": "index", "valueInteger": 1}, {"name": "value", "valueString": "x"}],
        [{"name": "type", "valueCode": "move"}, {"name": "path", "valueString": "Patient.name[0].given"},
         {"name": "source", "valueInteger": 0}, {"name": "destination", "valueInteger": 2}],
    )
    r = client.patch(f"/fhir/Patient/{rid}", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert r.json()["name"][0]["given"] == ["x", "b", "a"]


def test_fhirpath_patch_with_unsupported_path_syntax_is_400(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    body = fhirpath_patch([{"name": "type", "valueCode": "delete"},
                           {"name": "path", "valueString": "Patient.name.select(given)"}])
    r = client.patch(f"/fhir/Patient/{rid}", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[0].part"]


FHIR_JSON = {"Content-Type": "application/fhir+json"}
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
ORDER = "http://hl7.org/fhir/StructureDefinition/humanname-assembly-order"


def _patched(client, resource: dict, *operations: list[dict]) -> dict:
    rid = client.post("/fhir/Patient", json=resource).json()["id"]
    r = client.patch(f"/fhir/Patient/{rid}", json=fhirpath_patch(*operations), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert client.get(f"/fhir/Patient/{rid}").json() == r.json()
    return r.json()


def test_fhirpath_patch_deleting_the_last_child_removes_the_emptied_element(client):
    """FHIR JSON has no empty objects: deleting a name's only given name removes the name."""
    out = _patched(client, {"resourceType": "Patient", "name": [{"given": ["Ann"]}], "gender": "female"},
                   [{"name": "type", "valueCode": "delete"},
                    {"name": "path", "valueString": "Patient.name[0].given[0]"}])
    assert "name" not in out and out["gender"] == "female"


def test_fhirpath_patch_adds_and_deletes_the_extensions_of_primitives(client):
    """In FHIRPath a primitive has extensions (json.html#primitive keeps them in `_birthDate`)."""
    extension = {"name": "value", "part": [{"name": "url", "valueUri": BIRTH_PLACE},
                                           {"name": "valueAddress", "valueAddress": {"city": "Leiden"}}]}
    out = _patched(client, {"resourceType": "Patient", "birthDate": "1980-01-01", "name": [{"given": ["A", "B"]}]},
                   [{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "name", "valueString": "extension"}, extension],
                   [{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient.name[0].given[1]"},
                    {"name": "name", "valueString": "extension"},
                    {"name": "value", "part": [{"name": "url", "valueUri": ORDER},
                                               {"name": "valueCode", "valueCode": "NL1"}]}])
    assert out["birthDate"] == "1980-01-01"
    assert out["_birthDate"] == {"extension": [{"url": BIRTH_PLACE, "valueAddress": {"city": "Leiden"}}]}
    assert out["name"][0]["_given"] == [None, {"extension": [{"url": ORDER, "valueCode": "NL1"}]}]

    rid = out["id"]
    r = client.patch(f"/fhir/Patient/{rid}", headers=FHIR_JSON, json=fhirpath_patch(
        [{"name": "type", "valueCode": "delete"},
         {"name": "path", "valueString": f"Patient.birthDate.extension('{BIRTH_PLACE}')"}],
        [{"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.name[0].given[0]"}]))
    assert r.status_code == 200, r.text
    after = r.json()
    assert "_birthDate" not in after and after["birthDate"] == "1980-01-01"
    assert after["name"][0]["given"] == ["B"]  # its companion moves with it
    assert after["name"][0]["_given"] == [{"extension": [{"url": ORDER, "valueCode": "NL1"}]}]


def test_fhirpath_patch_takes_an_extension_value_part_named_after_its_element(client):
    """fhirpatch.html names parts after elements: Extension.value[x] sent as a part named `value`."""
    out = _patched(client, {"resourceType": "Patient", "gender": "male"},
                   [{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "extension"},
                    {"name": "value", "part": [{"name": "url", "valueUri": "http://example.org/nickname"},
                                               {"name": "value", "valueString": "Bo"}]}],
                   [{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "identifier"},
                    {"name": "value", "part": [{"name": "system", "valueUri": "urn:mrn"},
                                               {"name": "value", "valueString": "7"}]}])
    assert out["extension"] == [{"url": "http://example.org/nickname", "valueString": "Bo"}]
    assert out["identifier"] == [{"system": "urn:mrn", "value": "7"}]  # a plain `value` element stays one
