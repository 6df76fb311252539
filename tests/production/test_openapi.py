"""The OpenAPI document: generated from the live app, committed as openapi/openapi.json, FHIR-shaped."""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest

from ipt_fhir.api import openapi
from ipt_fhir.services.search import search_params_for_capability

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "openapi" / "openapi.json"
LISTED = ("CarePlan", "Goal", "Encounter", "Patient", "Condition", "Observation", "ServiceRequest", "Procedure")


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(openapi.export_text())


def test_committed_document_matches_the_code():
    current = openapi.export_text()
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    if committed != current:
        diff = difflib.unified_diff(committed.splitlines(), current.splitlines(), "openapi/openapi.json (committed)",
                                    "generated from the code", n=2, lineterm="")
        pytest.fail(
            "openapi/openapi.json is out of date with the routes and registries. Regenerate it with\n\n"
            f"    .venv/bin/{openapi.EXPORT_COMMAND}\n\n(or `python -m ipt_fhir.api.openapi openapi/openapi.json`) "
            "and commit the file. First differences:\n" + "\n".join(list(diff)[:60]), pytrace=False)


def test_served_document_is_the_exported_one(client):
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json()["paths"].keys() == json.loads(openapi.export_text())["paths"].keys()


@pytest.mark.parametrize("resource_type", [*LISTED, "Bundle", "OperationOutcome", "Parameters"])
def test_every_listed_type_has_its_official_json_schema(document, resource_type):
    schema = document["components"]["schemas"][resource_type]
    assert schema["properties"]["resourceType"]["const"] == resource_type


def test_every_schema_reference_resolves(document):
    text = json.dumps(document)
    for kind, name in set(re.findall(r'"#/components/(\w+)/([^"]+)"', text)):
        assert name in document["components"][kind], f"dangling $ref to {kind}/{name}"


def test_vendoring_script_and_documented_types_agree(monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # as when the script runs: its folder is on the path
    spec = importlib.util.spec_from_file_location("vendor", REPO / "scripts" / "vendor_openapi_schemas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(openapi.DOCUMENTED_TYPES) | set(openapi.BODY_TYPES) == set(module.RESOURCE_TYPES)


@pytest.mark.parametrize("resource_type", LISTED)
def test_read_create_update_use_the_type_schema_and_fhir_json(document, resource_type):
    item = document["paths"][f"/fhir/{resource_type}/{{resource_id}}"]
    ok = item["get"]["responses"]["200"]["content"]
    assert list(ok) == ["application/fhir+json"]
    assert ok["application/fhir+json"]["schema"]["$ref"] == f"#/components/schemas/{resource_type}"
    create = document["paths"][f"/fhir/{resource_type}"]["post"]
    assert create["requestBody"]["content"]["application/fhir+json"]["schema"]["$ref"].endswith(f"/{resource_type}")
    assert {"201", "400", "412", "422"} <= set(create["responses"])
    update = item["put"]
    assert {"200", "201", "409", "412", "422"} <= set(update["responses"])
    assert any(p.get("$ref", "").endswith("/If-Match") for p in update["parameters"])


@pytest.mark.parametrize("resource_type", LISTED)
def test_every_search_parameter_is_a_documented_query_parameter(document, resource_type):
    params = document["paths"][f"/fhir/{resource_type}"]["get"]["parameters"]
    resolved = [document["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                for p in params]
    names = {p["name"] for p in resolved if p["in"] == "query"}
    expected = {p["name"] for p in search_params_for_capability(resource_type)}
    assert expected <= names, sorted(expected - names)
    assert {"_count", "_sort", "_include", "_summary"} <= names


def test_examples_are_realistic_ipt_resources(document):
    examples = document["components"]["examples"]
    careplan = examples["CarePlan-stored"]["value"]
    assert careplan["resourceType"] == "CarePlan"
    assert any("ipt" in p for p in careplan["meta"]["profile"])
    phq9 = examples["Observation-stored"]["value"]
    assert phq9["code"]["coding"][0]["code"] == "44261-6"  # PHQ-9 total score
    assert examples["IPT-course-transaction"]["value"]["type"] == "transaction"


def test_operations_are_documented(document):
    operations = {path: item for path, item in document["paths"].items() if "$" in path}
    assert "/fhir/Patient/{patient_id}/$everything" in operations
    for path, item in operations.items():
        for method, op in item.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
            assert any(code.startswith("2") for code in op["responses"]), path
    if "/fhir/PlanDefinition/{plan_id}/$apply" in operations:  # IPT operations, when their routes are in
        apply = operations["/fhir/PlanDefinition/{plan_id}/$apply"]["post"]
        body = apply["requestBody"]["content"]["application/fhir+json"]
        assert body["schema"]["$ref"].endswith("/Parameters") and body["examples"]
        progress = operations["/fhir/CarePlan/{careplan_id}/$ipt-progress"]["get"]
        assert progress["responses"]["200"]["content"]["application/fhir+json"]["schema"]["$ref"].endswith(
            "/Parameters")
        assert "410" in progress["responses"]  # the plan was deleted


def test_errors_are_operation_outcomes(document):
    for name, response in document["components"]["responses"].items():
        assert response["content"]["application/fhir+json"]["schema"]["$ref"].endswith("/OperationOutcome"), name


def test_operations_endpoints_are_documented(document):
    assert {"/healthz", "/readyz", "/metrics"} <= set(document["paths"])


def test_docs_pages_load_only_local_assets(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r'(?:src|href)=["\']([^"\']+)', html.text) + re.findall(r"https?://[^\s\"'<>]+", html.text)
        assert urls, page
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url} from outside the server"
            if url.startswith("/static/"):
                assert client.get(url).status_code == 200, url


def test_static_assets_stay_small():
    static = REPO / "ipt_fhir" / "api" / "static"
    total = sum(f.stat().st_size for f in static.iterdir())
    assert total < 4 * 1024 * 1024


def test_get_apply_documents_the_query_parameters_the_operation_takes(document, client):
    """GET [base]/PlanDefinition/[id]/$apply takes the primitive inputs of OperationDefinition ipt-apply in
    the query; all but store (which changes the server: POST only) are documented, and a request built
    from the documented parameters alone is answered."""
    op = document["paths"]["/fhir/PlanDefinition/{plan_id}/$apply"]["get"]
    query = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    definition = client.get("/fhir/OperationDefinition/ipt-apply").json()
    inputs = {p["name"]: p for p in definition["parameter"] if p["use"] == "in"}
    assert set(query) == set(inputs) - {"store"}
    assert {n for n, p in query.items() if p["required"]} == {n for n, p in inputs.items() if p["min"] >= 1}
    assert query["sessionCount"]["schema"] == {"type": "integer", "minimum": 1}
    assert query["start"]["schema"] == {"type": "string", "format": "date"}
    values = {"subject": "Patient/p1", "practitioner": "Practitioner/t1", "start": "2025-01-06",
              "sessionCount": "10", "weekday": "wed"}
    r = client.get("/fhir/PlanDefinition/ipt-brief/$apply", params={n: values[n] for n in query})
    assert r.status_code == 200, r.text
    sessions = [e["resource"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "Encounter"]
    assert len(sessions) == 10 and sessions[0]["period"]["start"].startswith("2025-01-08")  # a Wednesday


def test_searches_across_types_document_type_and_the_parameters_every_type_has(document):
    """The system search and the compartment's across its types take `_type` and Resource's parameters;
    they used to list none (system) or Patient's own (`Patient/{id}/*`, as if it searched Patients)."""
    def names(op: dict) -> set[str]:
        refs = [p.get("$ref", "").rsplit("/", 1)[-1] for p in op.get("parameters", [])]
        return {document["components"]["parameters"][r]["name"] for r in refs if r}

    for path in ("/fhir", "/fhir/Patient/{patient_id}/*"):
        got = names(document["paths"][path]["get"])
        assert {"_type", "_id", "_lastUpdated", "_tag"} <= got and "gender" not in got, path
    for path in ("/fhir/_search", "/fhir/Patient/{patient_id}/_search"):
        form = document["paths"][path]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
        assert {"_type", "_id"} <= set(form["schema"]["properties"]) and "gender" not in form["schema"]["properties"]
