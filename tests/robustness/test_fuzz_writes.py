"""Property: whatever a client sends to create, update or patch, the answer is never a 5xx; every
refusal is an OperationOutcome with issues (resource problems with FHIRPath expressions); a refused
write leaves nothing behind."""
from __future__ import annotations

import json
from urllib.parse import quote

import orjson
from hypothesis import example, given, strategies as st

from .conftest import assert_fhir_answer, bounded, history_rows
from .mutations import fhirpath_patch_bodies, json_patch_ops, mutated_resources

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _check_write(app, client, method: str, url: str, body, headers=None, *, resource_problem: bool):
    before = history_rows(app)
    content = body if isinstance(body, bytes) else _dumps(body)
    response = client.request(method, url, content=content, headers={**FHIR_JSON, **(headers or {})})
    assert_fhir_answer(response, expect_expression=resource_problem and response.status_code in (400, 422))
    after = history_rows(app)
    if response.status_code >= 400:
        assert after == before, f"{method} {url} -> {response.status_code} but wrote {after - before} version(s)"
    return response


def _depth(node) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


def _dumps(resource) -> bytes:
    try:
        return orjson.dumps(resource)
    except TypeError:  # integers beyond 64 bits: the stdlib writes them, as clients do
        return json.dumps(resource).encode()


@bounded(120)
@given(resource=mutated_resources())
def test_create_with_a_broken_resource_never_fails_the_server(robust_app, rclient, resource):
    rtype = resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else "Patient"
    if not isinstance(rtype, str) or not rtype.isalpha():
        rtype = "Patient"
    _check_write(robust_app, rclient, "POST", f"/fhir/{rtype}", _dumps(resource),
                 resource_problem=_depth(resource) < 60)  # deeper: refused while parsing, before any path


@bounded(80)
@given(resource=mutated_resources())
def test_update_with_a_broken_resource_never_fails_the_server(robust_app, rclient, resource):
    rtype = resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else "Patient"
    if not rtype.isalpha():
        rtype = "Patient"
    rid = resource.get("id") if isinstance(resource.get("id"), str) and resource.get("id") else "fuzz-target"
    _check_write(robust_app, rclient, "PUT", f"/fhir/{rtype}/{quote(rid, safe='')}", _dumps(resource),
                 resource_problem=_depth(resource) < 60)


@bounded(60)
@given(ops=json_patch_ops, if_match=st.sampled_from([None, 'W/"1"', '"x"', "*", 'W/"999"']))
def test_json_patch_never_fails_the_server(robust_app, rclient, ops, if_match):
    headers = {"Content-Type": "application/json-patch+json"}
    if if_match:
        headers["If-Match"] = if_match
    _check_write(robust_app, rclient, "PATCH", "/fhir/Patient/example", _dumps(ops), headers, resource_problem=False)


@bounded(60)
@given(body=fhirpath_patch_bodies)
def test_fhirpath_patch_never_fails_the_server(robust_app, rclient, body):
    _check_write(robust_app, rclient, "PATCH", "/fhir/Patient/example", body, resource_problem=False)


RAW_BODIES = [b"", b" ", b"{", b"}", b"[]", b"null", b"0", b'"x"', b"\xff\xfe", b'{"resourceType":1}',
              b'{"resourceType":null}', b'{"resourceType":"Patient","id":{}}', b'\xef\xbb\xbf{"resourceType":"Patient"}',
              b'{"resourceType":"Patient","birthDate":"\\ud800"}', b'{"resourceType":"Patient"' + b" " * 10,
              b'{"resourceType":"Patient","active":NaN}', b'{"resourceType":"Patient","active":Infinity}',
              b'{"resourceType":"Patient","multipleBirthInteger":1' + b"0" * 400 + b"}",
              b'{"resourceType":"Patient","name":' + b"[" * 5000 + b"]" * 5000 + b"}",
              b'{"resourceType":"Patient","":""}', b'{"resourceType":"Patient","gender":"male"}\x00']


@bounded(80)
@given(body=st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=200),
                      st.text(max_size=200).map(str.encode)),
       method=st.sampled_from(["POST /fhir/Patient", "PUT /fhir/Patient/example", "PATCH /fhir/Patient/example",
                               "POST /fhir", "POST /fhir/Patient/$validate", "POST /fhir/Patient/_search",
                               "PUT /fhir/Patient?identifier=x", "POST /fhir/PlanDefinition/ipt-brief/$apply"]),
       ctype=st.sampled_from(["application/fhir+json", "application/json", "application/json-patch+json",
                              "application/fhir+json; charset=latin-1", "application/x-www-form-urlencoded", None]))
@example(body=b'{"resourceType":"Patient","name":' + b"[" * 5000 + b"]" * 5000 + b"}", method="POST /fhir/Patient",
         ctype="application/fhir+json")
def test_raw_bodies_never_fail_the_server(robust_app, rclient, body, method, ctype):
    verb, url = method.split(" ", 1)
    before = history_rows(robust_app)
    headers = {"Content-Type": ctype} if ctype else {}
    response = rclient.request(verb, url, content=body, headers=headers)
    assert_fhir_answer(response)
    if response.status_code >= 400:
        assert history_rows(robust_app) == before
