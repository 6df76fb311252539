"""Inputs whose handling differs by database: run on SQLite and PostgreSQL (the `client` fixture).
PostgreSQL text cannot hold NUL characters, and its integers and timestamps have hard ranges."""
from __future__ import annotations

import pytest

from .conftest import assert_fhir_answer


@pytest.mark.parametrize("body", [
    {"resourceType": "Patient", "name": [{"family": "a\u0000b"}]},
    {"resourceType": "Patient", "identifier": [{"system": "http://x\u0000", "value": "\u0000"}]},
    {"resourceType": "Patient", "birthDate": "0001-01-01", "multipleBirthInteger": 2147483647},
    {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1e300}},
    {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectiveDateTime": "9999-12-31T23:59:59+14:00"},
])
def test_extreme_values_are_stored_or_refused_never_500(client, body):
    response = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert_fhir_answer(response)


@pytest.mark.parametrize("query", ["name=a%00b", "identifier=http://x%00|%00", "_id=%00", "birthdate=lt0001-01-01",
                                   "birthdate=gt9999-12-31T23:59:59Z", "_count=%00", "family:contains=%00",
                                   "_lastUpdated=ge0001-01-01T00:00:00Z", "_page=%00"])
def test_extreme_search_values_never_500(client, query):
    assert_fhir_answer(client.get(f"/fhir/Patient?{query}"))
    assert_fhir_answer(client.get(f"/fhir/Observation?value-quantity=gt1e300&{query}"))


@pytest.mark.parametrize("method,url", [("GET", "/fhir/Patient/a%00b"), ("GET", "/fhir/Patient/a%00b/_history"),
                                        ("GET", "/fhir/Patient/a%00b/_history/1"), ("DELETE", "/fhir/Patient/a%00b"),
                                        ("GET", "/fhir/Patient/a%00b/$everything"), ("GET", "/fhir/Patient/a%00b/Observation"),
                                        ("GET", "/fhir/CarePlan/a%00b/$ipt-progress")])
def test_ids_with_nul_in_the_path_never_500(client, method, url):
    assert_fhir_answer(client.request(method, url))
