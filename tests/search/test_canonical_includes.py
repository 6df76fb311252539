"""_include / _revinclude over canonical references: a CarePlan's instantiatesCanonical names its protocol by
url (and optionally |version), not by [type]/[id] (references.html#canonical). The target is found by its
`url` (and `version`), whether a client stored it or the server serves it (the IPT protocols)."""
from __future__ import annotations

import pytest

PROTOCOL = "http://ipt-fhir.org/fhir/PlanDefinition/ipt-standard-individual"
FORM = "http://example.org/Questionnaire/intake"


def _careplan(cid: str, *canonicals: str) -> dict:
    return {"resourceType": "CarePlan", "id": cid, "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/p1"}, "instantiatesCanonical": list(canonicals)}


def _questionnaire(qid: str, version: str) -> dict:
    return {"resourceType": "Questionnaire", "id": qid, "url": FORM, "version": version, "status": "active"}


@pytest.fixture
def seeded(client):
    resources = [
        {"resourceType": "Patient", "id": "p1"},
        _questionnaire("intake-1", "1"), _questionnaire("intake-2", "2"),
        _careplan("on-protocol", PROTOCOL),
        _careplan("protocol-0.1.0", f"{PROTOCOL}|0.1.0"),  # the served protocol's version
        _careplan("protocol-9.9", f"{PROTOCOL}|9.9"),  # a version the server does not serve
        _careplan("form-v2", f"{FORM}|2"),
        _careplan("form-any", FORM),
        _careplan("form-v1", f"{FORM}|1"),
        _careplan("elsewhere", "http://example.org/PlanDefinition/unknown"),
    ]
    for r in resources:
        assert client.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r).status_code == 201
    return client


def entries(client, path: str) -> set[tuple[str, str, str]]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return {(e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"]) for e in r.json()["entry"]}


@pytest.mark.parametrize(("plan", "included"), [
    ("on-protocol", {("PlanDefinition", "ipt-standard-individual")}),  # one of the server's own
    ("protocol-0.1.0", {("PlanDefinition", "ipt-standard-individual")}),  # and its version is the one served
    ("protocol-9.9", set()),
    ("form-v2", {("Questionnaire", "intake-2")}),  # url|version: that version only
    ("form-v1", {("Questionnaire", "intake-1")}),
    ("form-any", {("Questionnaire", "intake-1"), ("Questionnaire", "intake-2")}),  # no version: each with that url
    ("elsewhere", set()),  # a url nothing here has
])
def test_include_follows_a_canonical_by_url_and_version(seeded, plan, included):
    got = entries(seeded, f"/fhir/CarePlan?_id={plan}&_include=CarePlan:instantiates-canonical")
    assert got == {("match", "CarePlan", plan)} | {("include", rt, rid) for rt, rid in included}


def test_include_with_a_target_type_keeps_to_that_type(seeded):
    path = "/fhir/CarePlan?_id=on-protocol,form-v2&_include=CarePlan:instantiates-canonical:Questionnaire"
    assert entries(seeded, path) == {("match", "CarePlan", "on-protocol"), ("match", "CarePlan", "form-v2"),
                                     ("include", "Questionnaire", "intake-2")}


@pytest.mark.parametrize(("path", "revincluded"), [
    # a stored resource; form-v1 names its version 1 only
    ("/fhir/Questionnaire?_id=intake-2", {"form-v2", "form-any"}),
    # a protocol the server serves, at version 0.1.0
    ("/fhir/PlanDefinition?_id=ipt-standard-individual", {"on-protocol", "protocol-0.1.0"}),
])
def test_revinclude_finds_the_plans_that_name_a_resource_by_url(seeded, path, revincluded):
    got = entries(seeded, f"{path}&_revinclude=CarePlan:instantiates-canonical")
    assert {e for e in got if e[0] == "include"} == {("include", "CarePlan", c) for c in revincluded}
    rtype, matched = path.removeprefix("/fhir/").split("?_id=")
    assert {e for e in got if e[0] == "match"} == {("match", rtype, matched)}


def test_a_deleted_target_is_not_included(seeded):
    assert seeded.delete("/fhir/Questionnaire/intake-2").status_code in (200, 204)
    got = entries(seeded, "/fhir/CarePlan?_id=form-any&_include=CarePlan:instantiates-canonical")
    assert got == {("match", "CarePlan", "form-any"), ("include", "Questionnaire", "intake-1")}


def test_revinclude_of_any_source_finds_canonical_references_too(seeded):
    got = entries(seeded, "/fhir/Questionnaire?_id=intake-2&_revinclude=*")
    assert got == {("match", "Questionnaire", "intake-2"), ("include", "CarePlan", "form-v2"),
                   ("include", "CarePlan", "form-any")}


def test_a_match_that_another_match_includes_is_listed_once_as_a_match(seeded):
    """A PlanDefinition derived from the server's protocol is a match of its own, not an include of it."""
    mine = {"resourceType": "PlanDefinition", "id": "mine", "status": "draft",
            "relatedArtifact": [{"type": "derived-from", "resource": PROTOCOL}]}
    assert seeded.put("/fhir/PlanDefinition/mine", json=mine).status_code == 201
    bundle = seeded.get("/fhir/PlanDefinition?_revinclude=PlanDefinition:derived-from&_count=50").json()
    listed = [(e["search"]["mode"], e["resource"]["id"]) for e in bundle["entry"]]
    assert listed.count(("match", "mine")) == 1 and ("include", "mine") not in listed
    assert bundle["total"] == sum(1 for mode, _ in listed if mode == "match")


def _ids(client, path: str) -> set[str]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


def test_a_chain_over_a_canonical_reference_leads_to_the_resources_with_that_url_and_version(seeded):
    """search.html#chaining holds for canonical-typed reference parameters too, matched as _include is."""
    assert _ids(seeded, "/fhir/CarePlan?instantiates-canonical:Questionnaire.version=2") == {"form-v2", "form-any"}
    assert _ids(seeded, "/fhir/CarePlan?instantiates-canonical:PlanDefinition.status=active&_count=50") == {
        "on-protocol", "protocol-0.1.0"}  # not 9.9, a version the server does not serve
    assert _ids(seeded, "/fhir/Questionnaire?_has:CarePlan:instantiates-canonical:_id=form-v1") == {"intake-1"}
    assert _ids(seeded, "/fhir/PlanDefinition?_has:CarePlan:instantiates-canonical:subject=Patient/p1") == {
        "ipt-standard-individual"}


@pytest.mark.parametrize(("resource_type", "code", "expected"), [
    ("CarePlan", "instantiates-canonical", True),  # CarePlan.instantiatesCanonical: canonical
    ("PlanDefinition", "definition", True),  # action.definition[x]: canonical | uri
    ("PlanDefinition", "derived-from", True),  # relatedArtifact.where(...).resource: canonical
    ("QuestionnaireResponse", "questionnaire", True),
    ("ConceptMap", "source-uri", True),  # (ConceptMap.source as uri): a ValueSet named by its url
    ("Observation", "subject", False),  # Reference, though its targets (Device) have a `url` parameter
    ("Observation", "patient", False),  # subject.where(resolve() is Patient)
    ("Encounter", "patient", False),
    ("ConceptMap", "target", True), ("Medication", "ingredient", False),  # (... as canonical) / (... as Reference)
    ("Observation", "no-such-parameter", False),
])
def test_which_reference_parameters_may_name_their_target_by_url(resource_type, code, expected):
    from ipt_fhir.services.canonical_includes import names_by_url

    assert names_by_url(resource_type, code) is expected


def test_an_expression_the_resolver_cannot_follow_counts_as_possibly_canonical():
    from ipt_fhir.fhir.search.path_types import Unresolved, reached_types

    assert reached_types("(ConceptMap.source as canonical)", "ConceptMap") == {"canonical"}
    assert reached_types("ConceptMap.source.ofType(uri)", "ConceptMap") == {"uri"}
    assert reached_types("PlanDefinition.action.definition", "PlanDefinition") == {"canonical", "uri"}
    assert reached_types("Bundle.entry[0].resource", "Bundle") == {"Resource"}
    # a constrained type is an instance of its base type (SimpleQuantity of Quantity)
    assert reached_types("MedicationRequest.dispenseRequest.quantity.as(Quantity)", "MedicationRequest") == \
        {"SimpleQuantity"}
    for expression in ("Observation.subject.resolve().url", "Observation.extension('http://x').value",
                       "Observation.nothing", "Observation.subject is Reference"):
        with pytest.raises(Unresolved):
            reached_types(expression, "Observation")


def test_a_parameter_whose_path_cannot_be_followed_may_name_its_target_by_url(monkeypatch):
    """No R4 reference parameter's path is unresolved today; should one be (a new definition, a FHIRPath
    form the compiler does not follow), names_by_url answers True: includes stay as complete as before."""
    from ipt_fhir.fhir.search import path_types
    from ipt_fhir.fhir.search.path_types import Unresolved

    assert path_types.names_by_url("Observation", "subject") is False  # a Reference: never by url

    def unresolved(path: str, resource_type: str) -> set[str]:
        raise Unresolved(path)

    monkeypatch.setattr(path_types, "reached_types", unresolved)
    path_types.names_by_url.cache_clear()
    try:
        assert path_types.names_by_url("Observation", "subject") is True
    finally:
        path_types.names_by_url.cache_clear()


def test_an_absolute_reference_is_not_resolved_through_the_targets_url(client):
    """Observation.subject is a Reference: a non-RESTful absolute one is kept as a url (no target id), but
    a Device whose `url` (its network address) happens to be that string is not what it refers to."""
    device = {"resourceType": "Device", "id": "d1", "url": "http://devices.example/d1"}
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "http://devices.example/d1"}}
    for r in (device, obs):
        assert client.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r).status_code == 201
    for include in ("_include=Observation:subject", "_include=Observation:subject:Device", "_include=Observation:*"):
        assert entries(client, f"/fhir/Observation?_id=o1&{include}") == {("match", "Observation", "o1")}, include
    assert entries(client, "/fhir/Device?_id=d1&_revinclude=Observation:subject") == {("match", "Device", "d1")}
    assert entries(client, "/fhir/Device?_id=d1&_revinclude=*") == {("match", "Device", "d1")}


def test_a_wildcard_include_looks_up_urls_only_of_the_parameters_that_hold_canonicals(client):
    """DeviceRequest has both kinds: basedOn (a Reference, here a non-RESTful absolute one) and
    instantiatesCanonical. `_include=DeviceRequest:*` resolves only the latter by url: the PlanDefinition
    whose url the basedOn reference happens to spell is not what it refers to."""
    resources = [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "PlanDefinition", "id": "pd1", "url": "http://plans.example/p1", "status": "active"},
        {"resourceType": "DeviceRequest", "id": "dr1", "status": "active", "intent": "order",
         "codeCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/p1"},
         "basedOn": [{"reference": "http://plans.example/p1"}]},
    ]
    for r in resources:
        assert client.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r).status_code == 201
    assert entries(client, "/fhir/DeviceRequest?_id=dr1&_include=DeviceRequest:*") == {
        ("match", "DeviceRequest", "dr1"), ("include", "Patient", "p1")}


def test_chains_follow_uri_named_references_and_deep_canonical_chains_are_too_costly(seeded):
    """The parameters _include resolves by url (canonical and uri elements) are the ones chains and _has
    follow by url; a chain through one follows at most two references in all (its SQL grows threefold a
    step, and SQLite refused three: a 500)."""
    library = {"resourceType": "Library", "id": "lib", "url": "http://example.org/Library/lib", "name": "Lib",
               "status": "active", "type": {"text": "logic"}}
    plan = {"resourceType": "PlanDefinition", "id": "pd", "status": "active", "library": [library["url"]]}
    for r in (library, plan):
        assert seeded.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r).status_code == 201
    assert _ids(seeded, "/fhir/PlanDefinition?depends-on:Library.name=Lib") == {"pd"}
    assert _ids(seeded, "/fhir/Library?_has:PlanDefinition:depends-on:status=active") == {"lib"}
    assert _ids(seeded, "/fhir/CarePlan?instantiates-canonical:Questionnaire.version=1&_id=form-v1") == {"form-v1"}
    r = seeded.get("/fhir/StructureDefinition?base.base.base.name=x")
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "too-costly", r.text[:300]
    assert seeded.get("/fhir/StructureDefinition?base.base.name=x").status_code == 200
