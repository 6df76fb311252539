"""Create, read, vread, update, delete: status codes and headers per http.html."""
from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

FHIR_JSON = "application/fhir+json"


def patient(**extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}],
            "birthDate": "1974-12-25", **extra}


def test_create_assigns_id_and_returns_201_with_location_etag_and_last_modified(client):
    r = client.post("/fhir/Patient", json=patient(id="client-chosen"))
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert parsedate_to_datetime(r.headers["last-modified"]).year >= 2024
    assert r.headers["content-type"].startswith(FHIR_JSON)


def test_create_ignores_even_an_invalid_client_id(client):
    """http.html#create: "If an id is provided, the server SHALL ignore it", also one that is no valid id,
    in a create and in a transaction's POST entry."""
    r = client.post("/fhir/Patient", json=patient(id="bad id!!"))
    assert r.status_code == 201, r.text
    assert r.json()["id"] != "bad id!!"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(id="bad id!!"), "request": {"method": "POST", "url": "Patient"}}]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"] == "201 Created", r.text
    assert "bad id!!" not in r.json()["entry"][0]["response"]["location"]
    # a valid client id is ignored as well, not only one that could not be kept
    bundle["entry"][0]["resource"] = patient(id="mine")
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    assert not r.json()["entry"][0]["response"]["location"].startswith("Patient/mine/")


def test_read_returns_what_was_created_with_version_headers(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    r = client.get(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["etag"] == 'W/"1"'
    assert "last-modified" in r.headers


def test_head_read_has_headers_and_no_body(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    r = client.head(f"/fhir/Patient/{created['id']}")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["etag"] == 'W/"1"'


def test_read_of_unknown_id_is_404_operation_outcome(client):
    r = client.get("/fhir/Patient/does-not-exist")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize("method, path, headers, status, root", [
    ("GET", "/fhir/Patient/does-not-exist", {}, 404, "Patient"),
    ("GET", "/fhir/Patient/does-not-exist/_history/1", {}, 404, "Patient"),
    ("DELETE", "/fhir/Patient/gone", {}, 410, "Patient"),  # read after delete, below
    ("PUT", "/fhir/Patient/stale", {"If-Match": 'W/"9"'}, 412, "Patient"),
    ("GET", "/fhir/no/such/route/here", {}, 404, "Resource"),
])
def test_errors_about_no_element_name_what_the_request_addresses(client, method, path, headers, status, root):
    """The README's promise: every error issue carries a FHIRPath expression; one about an instance that is
    not there, or a version that does not hold, names the resource the URL addresses."""
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.put("/fhir/Patient/stale", json=patient(id="stale"))
    if status == 410:
        client.delete(path)
        method = "GET"
    body = patient(id="stale") if method == "PUT" else None
    r = client.request(method, path, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert [i["expression"] for i in r.json()["issue"] if i["severity"] == "error"] == [[root]]


def test_unknown_resource_type_is_404_operation_outcome(client):
    r = client.get("/fhir/Patientx/1")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


PARAMETERS = {"resourceType": "Parameters", "id": "p1", "parameter": [{"name": "a", "valueString": "b"}]}


@pytest.mark.parametrize("method, path", [
    ("POST", "/fhir/Parameters"), ("PUT", "/fhir/Parameters/p1"), ("GET", "/fhir/Parameters/p1"),
    ("GET", "/fhir/Parameters"), ("GET", "/fhir/Parameters/_history"), ("DELETE", "/fhir/Parameters/p1")])
def test_parameters_has_no_rest_endpoint(client, method, path):
    """parameters.html: "There is no RESTful endpoint associated with it"; nothing is stored."""
    r = client.request(method, path, json=PARAMETERS if method in ("POST", "PUT") else None)
    assert r.status_code == 404
    assert r.json()["issue"][0]["code"] == "not-supported"
    assert "Parameters" not in {e["type"] for e in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    history = client.get("/fhir/_history", params={"_count": 1000})
    assert history.status_code == 200
    assert "Parameters" not in {e["request"]["url"].split("/")[0] for e in history.json().get("entry", [])}


def test_a_transaction_cannot_store_a_parameters_resource(client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": PARAMETERS, "request": {"method": "PUT", "url": "Parameters/p1"}}]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 404
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]


def test_update_increments_version_and_vread_serves_each_version(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    rid = created["id"]
    r = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"))
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'
    assert r.headers["location"].endswith(f"/Patient/{rid}/_history/2")
    assert client.get(f"/fhir/Patient/{rid}/_history/1").json()["meta"]["versionId"] == "1"
    v2 = client.get(f"/fhir/Patient/{rid}/_history/2")
    assert v2.json()["gender"] == "male"
    assert v2.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{rid}/_history/3").status_code == 404


def test_update_as_create_uses_the_client_id_and_returns_201(client):
    r = client.put("/fhir/Patient/my-id-1", json=patient(id="my-id-1"))
    assert r.status_code == 201
    assert r.json()["id"] == "my-id-1"
    assert r.headers["location"].endswith("/Patient/my-id-1/_history/1")


def test_update_with_body_id_different_from_url_is_400(client):
    r = client.put("/fhir/Patient/a", json=patient(id="b"))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.id"]


def test_update_without_body_id_is_400(client):
    assert client.put("/fhir/Patient/a", json=patient()).status_code == 400


def test_wrong_or_missing_resource_type_is_400(client):
    assert client.post("/fhir/Patient", json={"resourceType": "Observation"}).status_code == 400
    assert client.post("/fhir/Patient", json={"name": [{"family": "x"}]}).status_code == 400
    assert client.put("/fhir/Patient/x", json={"resourceType": "Observation", "id": "x"}).status_code == 400


@pytest.mark.parametrize("declared, status", [
    ("Group", 400), ("Patient", 201), ("http://hl7.org/fhir/StructureDefinition/Patient", 201)])
def test_a_reference_type_must_agree_with_the_reference(client, declared, status):
    """R4 Reference.type: when it and a FHIR-URL reference are both given they SHALL be consistent; the
    type is a resource type, bare or relative to http://hl7.org/fhir/StructureDefinition/."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": f"Patient/{pid}", "type": declared}}
    r = client.post("/fhir/Observation", json=obs)
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["issue"][0]["expression"] == ["Observation.subject.reference"]


def test_returns_412_when_if_match_is_stale(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert client.put(f"/fhir/Patient/{rid}", json=patient(id=rid), headers={"If-Match": 'W/"1"'}).status_code == 200
    stale = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="other"), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{rid}").json()["meta"]["versionId"] == "2"


def test_delete_then_read_is_410_and_history_keeps_the_deletion(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert client.delete(f"/fhir/Patient/{rid}").status_code == 204
    gone = client.get(f"/fhir/Patient/{rid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = client.get(f"/fhir/Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert client.get(f"/fhir/Patient/{rid}/_history/2").status_code == 410
    assert client.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200


def test_delete_of_missing_or_already_deleted_resource_is_204_without_new_version(client):
    assert client.delete("/fhir/Patient/never-existed").status_code == 204
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.delete(f"/fhir/Patient/{rid}")
    assert client.delete(f"/fhir/Patient/{rid}").status_code == 204
    assert client.get(f"/fhir/Patient/{rid}/_history").json()["total"] == 2


def test_update_after_delete_recreates_with_next_version(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.delete(f"/fhir/Patient/{rid}")
    r = client.put(f"/fhir/Patient/{rid}", json=patient(id=rid))
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "3"


def test_prefer_return_minimal_has_no_body(client):
    r = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b""
    assert "location" in r.headers and r.headers["etag"] == 'W/"1"'


def test_prefer_return_operation_outcome(client):
    r = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201
    assert r.json()["resourceType"] == "OperationOutcome"


def test_client_meta_is_kept_but_version_and_last_updated_are_the_servers(client):
    meta = {"versionId": "99", "lastUpdated": "2000-01-01T00:00:00Z", "tag": [{"system": "urn:t", "code": "x"}],
            "profile": ["http://example.org/p"], "source": "urn:ehr"}
    body = client.post("/fhir/Patient", json=patient(meta=meta)).json()
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != "2000-01-01T00:00:00Z"
    assert body["meta"]["tag"] == meta["tag"] and body["meta"]["source"] == "urn:ehr"
    assert body["meta"]["profile"] == meta["profile"]


def test_extensions_on_the_id_are_kept_by_an_update_and_go_with_the_ignored_id_of_a_create(client):
    """`_id` carries Resource.id's own extensions (json.html#primitive). An update keeps the client's id
    and so its extensions, in the stored version, its history and a transaction entry; a create ignores
    the client's id element (http.html#create), its extensions with it, even ones it could not store."""
    ext = {"extension": [{"url": "http://example.org/id-origin", "valueString": "ehr-7"}]}
    r = client.put("/fhir/Patient/with-ext", json=patient(id="with-ext", _id=ext))
    assert r.status_code == 201 and r.json()["_id"] == ext, r.text
    assert client.get("/fhir/Patient/with-ext").json()["_id"] == ext
    assert client.get("/fhir/Patient/with-ext/_history/1").json()["_id"] == ext
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(id="tx-ext", _id=ext), "request": {"method": "PUT", "url": "Patient/tx-ext"}}]}
    assert client.post("/fhir", json=bundle).status_code == 200
    assert client.get("/fhir/Patient/tx-ext").json()["_id"] == ext
    for sent in (patient(id="mine", _id=ext), patient(_id=ext), patient(id="mine", _id="no object")):
        r = client.post("/fhir/Patient", json=sent)
        assert r.status_code == 201 and "_id" not in r.json(), r.text
        assert "_id" not in client.get(f"/fhir/Patient/{r.json()['id']}").json()


def test_decimal_precision_is_kept(client):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
           "valueQuantity": {"value": 72.50, "unit": "kg"}}
    raw = b'{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":72.50}}'
    r = client.post("/fhir/Observation", content=raw, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    assert b'"value":72.50' in client.get(f"/fhir/Observation/{r.json()['id']}").content
    assert obs  # the dict form is what json= would send; the raw form proves the bytes survive


def test_negative_zero_comes_back_as_written_in_decimals_and_integers(client):
    """json.html: decimals keep their precision, and R4's integer regex allows -0: a value of -0, -0.0 or
    -0e0 is stored, read, searched and sent back in a Bundle as the client wrote it."""
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"t"},"valueQuantity":{"value":-0},'
           b'"referenceRange":[{"low":{"value":-0.0},"high":{"value":-0e0}}],'
           b'"component":[{"code":{"text":"c"},"valueInteger":-0}]}')
    r = client.post("/fhir/Observation", content=raw, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    for body in (r.content, client.get(f"/fhir/Observation/{r.json()['id']}").content,
                 client.get("/fhir/Observation?value-quantity=0").content):
        assert b'"valueQuantity":{"value":-0}' in body
        assert b'"low":{"value":-0.0},"high":{"value":-0e0}' in body and b'"valueInteger":-0}' in body


def test_if_none_match_on_read_gives_304(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert client.get(f"/fhir/Patient/{rid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_if_match_star_needs_a_current_version_and_a_malformed_if_match_is_400(client):
    """RFC 9110 13.1.1: If-Match: * holds when the resource has a current representation."""
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    body = {**patient(), "id": rid}
    assert client.put(f"/fhir/Patient/{rid}", json=body, headers={"If-Match": "*"}).status_code == 200
    assert client.put("/fhir/Patient/nobody", json={**body, "id": "nobody"}, headers={"If-Match": "*"}).status_code == 412
    patched = client.patch(f"/fhir/Patient/{rid}", headers={"If-Match": "*", "Content-Type": "application/json-patch+json"},
                           content=b'[{"op": "add", "path": "/active", "value": true}]')
    assert patched.status_code == 200
    client.delete(f"/fhir/Patient/{rid}")
    assert client.put(f"/fhir/Patient/{rid}", json=body, headers={"If-Match": "*"}).status_code == 412
    malformed = client.put(f"/fhir/Patient/{rid}", json=body, headers={"If-Match": "garbage"})
    assert malformed.status_code == 400 and malformed.json()["resourceType"] == "OperationOutcome"
