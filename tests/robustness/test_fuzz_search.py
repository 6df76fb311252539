"""Property: no query string, however odd, makes search, history or an operation fail the server;
refusals are OperationOutcomes with issues."""
from __future__ import annotations

from urllib.parse import quote

from hypothesis import example, given, strategies as st

from ipt_fhir.fhir.search.registry import registry

from .conftest import assert_fhir_answer, bounded, history_rows

TYPES = ["Patient", "Observation", "CarePlan", "Encounter", "Condition", "Goal", "Practitioner",
         "PlanDefinition", "CodeSystem", "AuditEvent", "Bogus", "patient"]
MODIFIERS = ["", ":missing", ":exact", ":contains", ":not", ":text", ":in", ":not-in", ":below", ":above",
             ":identifier", ":of-type", ":Patient", ":Bogus", ":", "::", ":iterate"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "zz"]
VALUES = ["", "x", "1", "-1", "0", "1e400", "NaN", "2024", "2024-02-30", "2024-01-01T10:00", "2024-01-01T25:00:00Z",
          "9999-99-99", "http://loinc.org|", "|x", "|", "a|b|c", "x,y", ",", "Patient/example", "example",
          "Patient/", "http://x/fhir/Patient/1", "5.4|http://unitsofmeasure.org|mg", "5||", "true", "%",
          "\u00e9", "\u0000", "a" * 400, "'", "\\", "$", "*", "1.5e-3", "urn:uuid:1", "Patient/a/_history/1"]
CONTROL = {"_count": ["0", "1", "-1", "x", "100000", "1.5", ""], "_sort": ["", "-", "date", "-_lastUpdated", "bogus", "name,-birthdate", ",,"],
           "_page": ["", "x", "eyJ9", "eyJrIjpbXX0=", "AAAA", "%%%", "eyJrIjpbIlBhdGllbnQiXX0"],
           "_include": ["", "*", "Patient:*", "Observation:subject", "Observation:subject:Patient", "Bogus:x", "x",
                        "Observation:bogus", ":"],
           "_revinclude": ["", "*", "Observation:subject", "Bogus:x", "Observation:subject:Bogus"],
           "_summary": ["", "true", "false", "count", "text", "data", "bogus"],
           "_elements": ["", "id", "name,gender", "bogus", ",", "a.b", "*"],
           "_total": ["none", "estimate", "accurate", "bogus"], "_contained": ["true", "both", "bogus"],
           "_has": ["x", "Observation:subject:code=1", "Observation:patient:code", "Bogus:a:b=c", "Observation::code=1"],
           "_type": ["", "Patient", "Patient,Observation", "Bogus"], "_id": ["", "example", "a,b", "bad id"],
           "_lastUpdated": ["gt2020", "x", "le2999-01-01T00:00:00Z"], "_format": ["json", "xml", "bogus", "application/fhir+json"],
           "_pretty": ["true", "x"], "_profile": ["x", "http://x"], "_tag": ["a|b", "|"], "_security": ["x"],
           "_text": ["x"], "_content": ["x"], "_list": ["x"], "_query": ["x"], "_filter": ["name eq x"],
           "_since": ["2020", "x", ""], "_at": ["2020", "x"], "_snapshot": ["x", "-1", "99999999999999999999"],
           "_offset": ["x", "-5", "99999999999999999999"]}


@st.composite
def search_param(draw, rtype: str):
    known = sorted(registry().params(rtype)) if rtype[:1].isupper() and registry().params(rtype) else ["name"]
    kind = draw(st.sampled_from(["known", "known", "control", "chain", "random"]))
    if kind == "control":
        name = draw(st.sampled_from(sorted(CONTROL)))
        return name + draw(st.sampled_from(["", "", ":iterate", ":bogus"])), draw(st.sampled_from(CONTROL[name]))
    if kind == "chain":
        name = draw(st.sampled_from(known)) + draw(st.sampled_from(["", ":Patient", ":Bogus"])) + "." + \
            draw(st.sampled_from(["name", "identifier", "bogus", "subject.name", "_id", "organization.name", ""]))
    elif kind == "random":
        name = draw(st.text(min_size=0, max_size=12))
    else:
        name = draw(st.sampled_from(known)) + draw(st.sampled_from(MODIFIERS))
    value = draw(st.sampled_from(PREFIXES)) + draw(st.one_of(st.sampled_from(VALUES), st.text(max_size=10)))
    return name, value


def _query(pairs) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


@st.composite
def searches(draw):
    rtype = draw(st.sampled_from(TYPES))
    pairs = draw(st.lists(search_param(rtype), max_size=4))
    return rtype, pairs


@bounded(150)
@given(search=searches(), where=st.sampled_from(["type", "type", "system", "compartment", "post", "everything"]),
       strict=st.booleans())
@example(search=("Patient", [("_count", "-1")]), where="type", strict=False)
@example(search=("Patient", [("_page", "eyJrIjpbXX0=")]), where="type", strict=False)
def test_any_search_is_answered_without_a_server_error(robust_app, rclient, search, where, strict):
    rtype, pairs = search
    before = history_rows(robust_app)
    headers = {"Prefer": "handling=strict"} if strict else {}
    query = _query(pairs)
    if where == "post":
        response = rclient.post(f"/fhir/{rtype}/_search", content=query.encode(),
                                headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    else:
        path = {"type": f"/fhir/{rtype}", "system": "/fhir", "compartment": f"/fhir/Patient/example/{rtype}",
                "everything": "/fhir/Patient/example/$everything"}[where]
        response = rclient.get(f"{path}?{query}", headers=headers)
    assert_fhir_answer(response)
    if response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json"):
        body = response.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", body
        for entry in body.get("entry", []):
            assert entry["search"]["mode"] in ("match", "include", "outcome")
            if entry["search"]["mode"] != "outcome":
                assert entry["fullUrl"].startswith("http://testserver/fhir/")
        # every link the server hands out must itself work
        for link in body.get("link", []):
            if link["relation"] in ("next", "previous", "prev", "last"):
                followed = rclient.get(link["url"])
                assert followed.status_code == 200, f"{link['url']} -> {followed.status_code} {followed.text[:300]}"
    assert history_rows(robust_app) == before


HISTORY_PATHS = ["/fhir/_history", "/fhir/Patient/_history", "/fhir/Patient/example/_history",
                 "/fhir/Patient/nope/_history", "/fhir/Bogus/_history", "/fhir/Patient/example/_history/1",
                 "/fhir/Patient/example/_history/0", "/fhir/Patient/example/_history/-1",
                 "/fhir/Patient/example/_history/99999999999999999999999", "/fhir/Patient/example/_history/x"]
HISTORY_PARAMS = ["_count", "_since", "_at", "_snapshot", "_offset", "_page", "_format", "_pretty", "_summary",
                  "_elements", "_list", "bogus", "_sort"]


@bounded(80)
@given(path=st.sampled_from(HISTORY_PATHS),
       pairs=st.lists(st.tuples(st.sampled_from(HISTORY_PARAMS),
                                st.one_of(st.sampled_from(sum(CONTROL.values(), []) + VALUES), st.text(max_size=8))),
                      max_size=3))
def test_any_history_request_is_answered_without_a_server_error(rclient, path, pairs):
    response = rclient.get(f"{path}?{_query(pairs)}")
    assert_fhir_answer(response)
    if response.status_code == 200 and "/_history/" not in path:
        body = response.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "history"
        for link in body.get("link", []):
            if link["relation"] in ("next", "previous", "prev", "last"):
                assert rclient.get(link["url"]).status_code == 200, link


OPERATION_GETS = ["/fhir/CarePlan/example/$ipt-progress", "/fhir/CarePlan/nope/$ipt-progress",
                  "/fhir/Patient/example/$ipt-progress", "/fhir/PlanDefinition/ipt-brief/$apply",
                  "/fhir/PlanDefinition/nope/$apply", "/fhir/Patient/example/$validate", "/fhir/Patient/nope/$validate",
                  "/fhir/Patient/example/$everything", "/fhir/Patient/nope/$everything", "/fhir/Patient/$everything",
                  "/fhir/Patient/example/$bogus", "/fhir/$bogus", "/fhir/metadata", "/fhir/Patient/$export"]
OPERATION_PARAMS = ["subject", "practitioner", "start", "sessionCount", "weekday", "store", "mode", "profile",
                    "_since", "_type", "_count", "_outputFormat", "_typeFilter", "bogus", "mode", "_summary", "_elements"]
OPERATION_VALUES = ["Patient/example", "Practitioner/example", "2025-03-03", "mon", "true", "0", "-1", "999999",
                    "create", "update", "delete", "bogus", "", "Patient/nope", "2025-02-30", "x" * 300, "http://x"]


@bounded(80)
@given(path=st.sampled_from(OPERATION_GETS),
       pairs=st.lists(st.tuples(st.sampled_from(OPERATION_PARAMS), st.sampled_from(OPERATION_VALUES)), max_size=5))
def test_any_operation_query_is_answered_without_a_server_error(robust_app, rclient, path, pairs):
    before = history_rows(robust_app)
    response = rclient.get(f"{path}?{_query(pairs)}")
    assert_fhir_answer(response)
    assert history_rows(robust_app) == before
