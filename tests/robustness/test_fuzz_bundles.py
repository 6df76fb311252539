"""Property: transaction and batch Bundles, valid or broken, never fail the server; a failed
transaction writes nothing; a response Bundle answers every entry."""
from __future__ import annotations

import copy
import json

import orjson
from hypothesis import given, strategies as st

from .conftest import assert_fhir_answer, bounded, history_rows
from .mutations import WRONG_TYPES, mutated_resources, sample_resources

UUIDS = [f"urn:uuid:0000000{i}-0000-4000-8000-000000000000" for i in range(4)]
URLS = ["Patient", "Patient/example", "Patient/fz-b1", "Observation", "Patient?identifier=x", "Patient?bogus=1",
        "Patient/example/_history/1", "Patient/$everything", "metadata", "", "/", "Bogus/1", "Patient/a b",
        "http://testserver/fhir/Patient/example", "Patient/example/$validate", "AuditEvent", "_history",
        "Patient?_count=1", "Patient/example?_format=json", "%", "Patient/../Patient/x"]


@st.composite
def entries(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "bogus", None]))
    entry: dict = {}
    if draw(st.booleans()):
        entry["fullUrl"] = draw(st.sampled_from(UUIDS + ["urn:uuid:x", "http://x/Patient/1", "", "urn:oid:1.2.3"]))
    if method in ("POST", "PUT", "PATCH") or draw(st.integers(0, 4)) == 0:
        resource = draw(st.one_of(sample_resources(), mutated_resources()))
        if draw(st.booleans()):  # point at another entry
            resource["subject"] = {"reference": draw(st.sampled_from(UUIDS + ["urn:uuid:missing"]))}
        if method == "PATCH":
            resource = draw(st.sampled_from([
                {"resourceType": "Binary", "contentType": "application/json-patch+json",
                 "data": "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9hY3RpdmUiLCJ2YWx1ZSI6dHJ1ZX1d"},
                {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "!!!"},
                {"resourceType": "Parameters", "parameter": [{"name": "operation"}]}, resource]))
        entry["resource"] = resource
    if method is not None or draw(st.booleans()):
        request = {"method": method, "url": draw(st.sampled_from(URLS))}
        for key, values in (("ifMatch", ['W/"1"', 'W/"99"', "x"]), ("ifNoneExist", ["identifier=x", "bogus=1", "_id=example", ""]),
                            ("ifNoneMatch", ["*"]), ("ifModifiedSince", ["2020-01-01T00:00:00Z", "x"])):
            if draw(st.integers(0, 5)) == 0:
                request[key] = draw(st.sampled_from(values))
        if draw(st.integers(0, 8)) == 0:
            request[draw(st.sampled_from(["method", "url", "bogus"]))] = draw(st.sampled_from(WRONG_TYPES).map(copy.deepcopy))
        entry["request"] = request
    if draw(st.integers(0, 8)) == 0:
        entry[draw(st.sampled_from(["response", "search", "bogus"]))] = {"status": "200"}
    return entry


@st.composite
def bundles(draw):
    bundle = {"resourceType": "Bundle", "type": draw(st.sampled_from(["transaction", "batch", "transaction", "batch",
                                                                      "collection", "searchset", "bogus", None])),
              "entry": draw(st.lists(entries(), max_size=6))}
    if bundle["type"] is None:
        del bundle["type"]
    if draw(st.integers(0, 6)) == 0:
        bundle["entry"] = draw(st.sampled_from(WRONG_TYPES).map(copy.deepcopy))
    return bundle


def _dumps(value) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


@bounded(100)
@given(bundle=bundles(), prefer=st.sampled_from([None, "return=minimal", "return=OperationOutcome", "return=representation"]))
def test_any_batch_or_transaction_is_answered_without_a_server_error(robust_app, rclient, bundle, prefer):
    before = history_rows(robust_app)
    headers = {"Content-Type": "application/fhir+json"}
    if prefer:
        headers["Prefer"] = prefer
    response = rclient.post("/fhir", content=_dumps(bundle), headers=headers)
    assert_fhir_answer(response)
    if response.status_code >= 400:
        assert history_rows(robust_app) == before, f"refused {bundle.get('type')} wrote versions: {response.text[:300]}"
        return
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == f"{bundle['type']}-response", body.get("type")
    assert len(body.get("entry", [])) == len(bundle.get("entry", []))
    for entry in body.get("entry", []):
        status = entry["response"]["status"]
        assert status[:3].isdigit() and int(status[:3]) < 500, entry
        outcome = entry["response"].get("outcome")
        if int(status[:3]) >= 400:
            assert outcome and outcome["resourceType"] == "OperationOutcome" and outcome["issue"], entry
