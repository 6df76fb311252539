"""Inputs the fuzzers found that once answered 500: each must now be a 4xx OperationOutcome (or a
success) and write nothing when refused."""
from __future__ import annotations

import pytest

from tests.api.test_patch import fhirpath_patch

from .conftest import assert_fhir_answer, history_rows

BROKEN_WRITES = [
    # ref-1 walked `contained` assuming a list
    ("POST", "/fhir/CarePlan", {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                                 "subject": {"reference": "#p"}, "contained": None}),
    # a required-binding check hashed whatever JSON sat in Coding.system / Coding.code
    ("PUT", "/fhir/Condition/fz1", {"resourceType": "Condition", "id": "fz1", "subject": {"reference": "Patient/example"},
                                     "clinicalStatus": {"coding": [{"system": ["x"], "code": "active"}]}}),
    ("PUT", "/fhir/Condition/fz2", {"resourceType": "Condition", "id": "fz2", "subject": {"reference": "Patient/example"},
                                     "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                                    "code": {"x": 1}}]}}),
]


@pytest.mark.parametrize("method,url,body", BROKEN_WRITES)
def test_broken_resource_is_a_4xx_outcome_and_writes_nothing(robust_app, rclient, method, url, body):
    before = history_rows(robust_app)
    response = rclient.request(method, url, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert_fhir_answer(response, expect_expression=True)
    assert history_rows(robust_app) == before


def test_an_unpaired_surrogate_escape_is_malformed_json_not_a_500(robust_app, rclient):
    before = history_rows(robust_app)
    for body in (b'{"resourceType":"Patient","birthDate":"\\ud800"}',
                 b'{"resourceType":"Patient","name":[{"family":"\\udc00x"}],"multipleBirthDecimal":1.50}'):
        response = rclient.post("/fhir/Patient", content=body, headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 400, response.text
        assert_fhir_answer(response)
    paired = rclient.post("/fhir/Patient", content=b'{"resourceType":"Patient","name":[{"family":"\\ud83d\\ude00"}]}',
                          headers={"Content-Type": "application/fhir+json"})
    assert paired.status_code == 201 and paired.json()["name"][0]["family"] == "\U0001F600"
    assert history_rows(robust_app) == before + 1


@pytest.mark.parametrize("url,status", [
    ("/fhir/Patient/example/_history/99999999999999999999999", 404),  # once an SQL integer overflow
    ("/fhir/Patient/example/_history/\u00b2", 404),  # str.isdigit() accepts '²', int() does not
    ("/fhir/_history?_snapshot=99999999999999999999", 400),
    ("/fhir/_history?_count=\u00b2", 400),
    ("/fhir/Patient/example/_history?_offset=\u00b3", 400),
    ("/fhir/PlanDefinition/ipt-brief/$apply?subject=Patient/example&start=2025-03-03&sessionCount=\u00b2", 400),
    ("/fhir/PlanDefinition/ipt-brief/$apply?subject=Patient/example&start=2025-03-03&weekday=\u00b2", 400),
])
def test_numeric_parameters_out_of_range_or_not_ascii_are_client_errors(rclient, url, status):
    response = rclient.get(url)
    assert response.status_code == status, response.text
    assert_fhir_answer(response)


def test_if_match_with_a_huge_or_unicode_version_is_412_or_400_not_500(robust_app, rclient):
    # a version no resource can have fails the precondition, as does an entity-tag of other characters (a
    # non-ASCII digit is obs-text, RFC 9110 8.8.3); unquoted, it is no entity-tag at all
    for tag, status in (('W/"99999999999999999999999"', 412), ('W/"\u00b2"', 412), ("\u00b2", 400)):
        before = history_rows(robust_app)
        response = rclient.put("/fhir/Patient/example", json={"resourceType": "Patient", "id": "example"},
                               headers={"If-Match": tag.encode("utf-8")})
        assert response.status_code == status, response.text
        assert_fhir_answer(response)
        assert history_rows(robust_app) == before


def test_transaction_get_of_an_impossible_version_is_a_404_entry(rclient):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/example/_history/99999999999999999999999"}},
        {"request": {"method": "GET", "url": "Patient/example/_history/\u00b2"}}]}
    response = rclient.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"][:3] for e in response.json()["entry"]] == ["404", "404"]


@pytest.mark.parametrize("entry", [None, {}, "", 0, False])
def test_bundle_entry_that_is_not_an_array_is_400(rclient, entry):
    response = rclient.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entry})
    assert response.status_code == 400, response.text
    assert_fhir_answer(response, expect_expression=True)


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("method", [{}, [], ["POST"], 1, None])
def test_entry_request_method_of_the_wrong_json_type_is_refused_not_500(rclient, kind, method):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": method, "url": "Patient"}}]}
    response = rclient.post("/fhir", json=bundle)
    assert_fhir_answer(response, expect_expression=True)
    if kind == "transaction":
        assert response.status_code == 400
    else:
        assert response.json()["entry"][0]["response"]["status"].startswith("400")


@pytest.mark.parametrize("method,url,body", [
    ("POST", "/fhir/Patient?_format=xml", {"resourceType": "Patient"}),
    ("PUT", "/fhir/Patient/fz-406?_format=x", {"resourceType": "Patient", "id": "fz-406"}),
    ("PUT", "/fhir/Patient?identifier=fz406&_format=xml", {"resourceType": "Patient"}),
    ("PATCH", "/fhir/Patient/example?_format=xml", [{"op": "add", "path": "/language", "value": "en"}]),
    ("POST", "/fhir?_format=xml", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}),
    ("DELETE", "/fhir/Patient/example?_format=xml", None),
    ("DELETE", "/fhir/Patient?_id=example&_format=xml", None),
])
def test_a_write_refused_with_406_is_not_applied(robust_app, rclient, method, url, body):
    before = history_rows(robust_app)
    ctype = "application/json-patch+json" if method == "PATCH" else "application/fhir+json"
    response = rclient.request(method, url, json=body, headers={"Content-Type": ctype})
    assert response.status_code == 406, response.text
    assert_fhir_answer(response)
    assert history_rows(robust_app) == before
    xml_accept = rclient.request(method, url.replace("_format=x", "_pretty=false"), json=body,
                                 headers={"Content-Type": ctype, "Accept": "application/fhir+xml"})
    assert xml_accept.status_code == 406, xml_accept.text
    assert history_rows(robust_app) == before
    assert rclient.get("/fhir/Patient/example").status_code == 200


@pytest.mark.parametrize("body", [[], [None], [1, 2], {"resourceType": "Parameters", "parameter": {}},
                                  {"resourceType": "Parameters", "parameter": [None]},
                                  {"resourceType": "Parameters", "parameter": [{"name": {"x": 1}}]}])
def test_apply_with_a_body_of_the_wrong_shape_is_400(rclient, body):
    response = rclient.post("/fhir/PlanDefinition/ipt-brief/$apply", json=body)
    assert response.status_code == 400, response.text
    assert_fhir_answer(response)


def test_a_decimal_beyond_a_double_is_stored_exactly_and_search_goes_on(rclient):
    """1e400 is a valid FHIR decimal. Its index row once held NULL, which failed every later move of
    pending index rows: from then on every search and history answered 500."""
    body = b'{"resourceType":"Observation","status":"final","code":{"text":"huge"},"valueQuantity":{"value":1e400}}'
    created = rclient.post("/fhir/Observation", content=body, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert b'"value":1e400' in rclient.get(f"/fhir/Observation/{rid}").content
    above = rclient.get(f"/fhir/Observation?_id={rid}&value-quantity=gt1e300")
    assert above.status_code == 200 and above.json()["total"] == 1
    assert rclient.get(f"/fhir/Observation?_id={rid}&value-quantity=lt1e300").json()["total"] == 0
    assert rclient.get("/fhir/_history?_count=1").status_code == 200


BIG = 123456789012345678901234567890  # beyond 64 bits: orjson writes no such integer


def test_an_integer_decimal_beyond_64_bits_is_stored_exactly_on_every_write_path(rclient):
    """A FHIR decimal may be any JSON number. Written as an integer beyond 64 bits it once answered 500
    on every write path, and a batch answered 500 after committing its other entries."""
    body = ('{"resourceType":"Observation","id":"big","status":"final","code":{"text":"big"},'
            f'"valueQuantity":{{"value":{BIG}}}}}').encode()
    put = rclient.put("/fhir/Observation/big", content=body, headers={"Content-Type": "application/fhir+json"})
    assert put.status_code == 201, put.text
    assert f'"value":{BIG}'.encode() in rclient.get("/fhir/Observation/big").content
    assert f'"value": {BIG}'.encode() in rclient.get("/fhir/Observation/big?_pretty=true").content
    patched = rclient.patch("/fhir/Observation/big", json=fhirpath_patch(
        [{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Observation.valueQuantity.value"},
         {"name": "value", "valueDecimal": BIG + 1}]), headers={"Content-Type": "application/fhir+json"})
    assert patched.status_code == 200, patched.text
    assert f'"value":{BIG + 1}'.encode() in rclient.get("/fhir/Observation/big").content

    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "BatchOk"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "big"},
                      "valueQuantity": {"value": BIG}}, "request": {"method": "POST", "url": "Observation"}}]}
    r = rclient.post("/fhir", json=batch, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created", "201 Created"]
    assert f'"value":{BIG}'.encode() in r.content

    in_an_array = ('{"resourceType":"Observation","id":"bigc","status":"final","code":{"text":"big"},'
                   f'"component":[{{"code":{{"text":"c"}},"valueQuantity":{{"value":{BIG}}}}}]}}').encode()
    assert rclient.put("/fhir/Observation/bigc", content=in_an_array,
                       headers={"Content-Type": "application/fhir+json"}).status_code == 201
    assert f'"value":{BIG}'.encode() in rclient.get("/fhir/Observation/bigc").content

    too_big = rclient.put("/fhir/Observation/big", content=body.replace(b'"valueQuantity":{"value"', b'"valueInteger"')
                          .replace(f"{BIG}}}".encode(), f"{BIG}".encode()),
                          headers={"Content-Type": "application/fhir+json"})
    assert too_big.status_code == 400, too_big.text  # an integer is 32 bits


def test_a_conditional_reference_outside_a_bundle_is_refused_not_stored_literally(rclient):
    """Only a transaction (or an import) resolves `Type?criteria`; a plain write would store a reference
    that locates nothing."""
    rclient.put("/fhir/Patient/condp", json={"resourceType": "Patient", "id": "condp",
                                             "identifier": [{"system": "http://s", "value": "c1"}]})
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient?identifier=http://s|c1"}}
    r = rclient.post("/fhir/Observation", json=obs)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["Observation.subject.reference"]
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
    done = rclient.post("/fhir", json=tx)
    assert done.status_code == 200, done.text
    stored = rclient.get("/fhir/" + done.json()["entry"][0]["response"]["location"].split("/_history")[0]).json()
    assert stored["subject"]["reference"] == "Patient/condp"
