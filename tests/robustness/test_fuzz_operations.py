"""Property: $validate, $apply and conditional writes with odd bodies and criteria never fail the server,
and the read-only operations write nothing."""
from __future__ import annotations

import copy
import json

import orjson
from hypothesis import given, strategies as st

from .conftest import assert_fhir_answer, bounded, history_rows
from .mutations import WRONG_TYPES, mutated_resources, sample_resources


def _dumps(value) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


parameters_bodies = st.builds(
    lambda params: {"resourceType": "Parameters", "parameter": params},
    st.lists(st.fixed_dictionaries({"name": st.sampled_from(["resource", "mode", "profile", "subject", "practitioner",
                                                             "start", "sessionCount", "weekday", "store", "", "bogus"])},
                                    optional={"resource": st.one_of(sample_resources(), mutated_resources()),
                                              "valueCode": st.sampled_from(["create", "update", "delete", "mon", "x", ""]),
                                              "valueString": st.sampled_from(["http://x", "", "2025-03-03", "Patient/example"]),
                                              "valueReference": st.sampled_from([{"reference": "Patient/example"}, {"reference": "Practitioner/example"},
                                                                                 {"reference": "Patient/nope"}, {}, {"reference": 1}]),
                                              "valueDate": st.sampled_from(["2025-03-03", "2025-02-30", "x", ""]),
                                              "valueInteger": st.sampled_from([0, -1, 1, 16, 10 ** 9, 1.5]),
                                              "valueBoolean": st.sampled_from([True, False, "true"]),
                                              "part": st.sampled_from(WRONG_TYPES).map(copy.deepcopy)}),
             max_size=6))


@bounded(80)
@given(body=st.one_of(parameters_bodies, mutated_resources(), st.sampled_from(WRONG_TYPES).map(copy.deepcopy)),
       url=st.sampled_from(["/fhir/Patient/$validate", "/fhir/Observation/$validate", "/fhir/Patient/example/$validate",
                            "/fhir/Patient/nope/$validate", "/fhir/Bogus/$validate", "/fhir/CarePlan/$validate",
                            "/fhir/Patient/$validate?mode=delete", "/fhir/Patient/$validate?profile=http://x",
                            "/fhir/PlanDefinition/ipt-brief/$apply", "/fhir/PlanDefinition/nope/$apply",
                            "/fhir/PlanDefinition/ipt-standard-individual/$apply"]))
def test_operation_bodies_never_fail_the_server(robust_app, rclient, body, url):
    before = history_rows(robust_app)
    response = rclient.post(url, content=_dumps(body), headers={"Content-Type": "application/fhir+json"})
    assert_fhir_answer(response)
    if "$validate" in url:
        assert history_rows(robust_app) == before
        if response.status_code == 200:
            assert response.json()["resourceType"] == "OperationOutcome"
    elif response.status_code >= 400:
        assert history_rows(robust_app) == before


@bounded(60)
@given(criteria=st.lists(st.tuples(st.sampled_from(["identifier", "_id", "name", "bogus", "_count", "_format", "birthdate",
                                                    "family:exact", "_has:Observation:subject:code"]),
                                   st.sampled_from(["x", "", "example", "le2000", "a|b", "|", "1e999", "\u00e9"])),
                         max_size=3),
       method=st.sampled_from(["PUT", "PATCH", "DELETE", "POST-INE"]),
       resource=sample_resources())
def test_conditional_writes_never_fail_the_server(robust_app, rclient, criteria, method, resource):
    from urllib.parse import urlencode

    before = history_rows(robust_app)
    query = urlencode(criteria)
    rtype = resource.get("resourceType", "Patient")
    resource = {k: v for k, v in resource.items() if k != "id"}
    if method == "POST-INE":
        response = rclient.post(f"/fhir/{rtype}", content=_dumps(resource),
                                headers={"Content-Type": "application/fhir+json", "If-None-Exist": query})
    elif method == "PATCH":
        response = rclient.patch(f"/fhir/{rtype}?{query}", content=b'[{"op":"add","path":"/language","value":"en"}]',
                                 headers={"Content-Type": "application/json-patch+json"})
    elif method == "DELETE":
        response = rclient.delete(f"/fhir/{rtype}?{query}")
    else:
        response = rclient.put(f"/fhir/{rtype}?{query}", content=_dumps(resource),
                               headers={"Content-Type": "application/fhir+json"})
    assert_fhir_answer(response)
    if response.status_code >= 400:
        assert history_rows(robust_app) == before, f"{method} {rtype}?{query} -> {response.status_code} {response.text[:300]}"
