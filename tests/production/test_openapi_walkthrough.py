"""Every request example of the OpenAPI document works as written on a fresh server, run in the order the
examples document (their `x-walkthrough-step`, said in their summaries): what a developer does with
"Try it out" in /docs. (test_schemathesis only checks that examples never get a 5xx; a 4xx passed it.)"""
from __future__ import annotations

import json
import re

from ipt_fhir.api import openapi_walkthrough as walk


def _resolve(document: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if ref is None:
        return node
    kind, name = ref.split("/")[-2:]
    return document["components"][kind][name]


def _url(document: dict, path: str, op: dict) -> tuple[str, dict]:
    """The path with the path parameters' examples filled in, and the query parameters that have one."""
    query = {}
    for param in map(lambda p: _resolve(document, p), op.get("parameters", [])):
        if param["in"] == "path":
            assert "example" in param, f"{path}: path parameter {param['name']} has no example to try"
            path = path.replace("{" + param["name"] + "}", str(param["example"]))
        elif param["in"] == "query" and "example" in param:
            query[param["name"]] = param["example"]
    return path, query


def _runs(document: dict) -> list[tuple[int, str, str, str, dict, str | None, object]]:
    """(step, method, path, url, query, content type, body) of every documented request example."""
    runs = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            url, query = _url(document, path, op) if (op.get("requestBody") or "x-walkthrough-step" in op) \
                else (path, {})
            if "x-walkthrough-step" in op:
                runs.append((op["x-walkthrough-step"], method, path, url, query, None, None))
            for media_type, media in (op.get("requestBody") or {}).get("content", {}).items():
                for name, ref in (media.get("examples") or {}).items():
                    example = _resolve(document, ref)
                    assert "x-walkthrough-step" in example, f"{method} {path} example {name!r} says no step"
                    assert example["summary"].startswith(f"Step {example['x-walkthrough-step']}:"), example
                    runs.append((example["x-walkthrough-step"], method, path, url, query, media_type,
                                 example["value"]))
    # within a step: instance paths before conditional ones (whose criteria find what the former wrote)
    return sorted(runs, key=lambda r: (r[0], "{resource_id}" not in r[2] and "{" not in r[2], r[2], r[1]))


def test_every_request_example_succeeds_on_a_fresh_server_in_the_documented_order(client):
    document = client.get("/openapi.json").json()
    runs = _runs(document)
    steps = {r[0] for r in runs}
    assert {walk.TRANSACTION_STEP, walk.APPLY_STEP, walk.PROGRESS_STEP, walk.CREATE_STEP} <= steps
    puts = [r[2] for r in runs if r[1] == "put" and "{resource_id}" in r[2]]
    assert {p.split("/")[2] for p in puts} == {"CarePlan", "ServiceRequest", "Encounter", "Observation", "Goal",
                                               "Patient", "Practitioner", "Condition", "Procedure"}
    for step, method, path, url, query, media_type, body in runs:
        headers = {"Content-Type": media_type} if media_type else {}
        content = None if body is None else json.dumps(body)
        r = client.request(method.upper(), url, params=query, content=content, headers=headers)
        assert 200 <= r.status_code < 300, f"step {step}: {method.upper()} {url} {query} ({media_type}): {r.text}"

    progress = client.get(f"/fhir/CarePlan/{walk.FIXED_IDS['CarePlan']}/$ipt-progress").json()
    figures = {p["name"]: p for p in progress["parameter"]}
    assert figures["sessionsPlanned"]["valueInteger"] == 18  # the course's 14 and the create example's 4 more
    assert figures["sessionsAttended"]["valueInteger"] == 2  # the PUT session 1 and the created session 2


def test_the_overview_gives_each_put_the_step_its_example_carries(client):
    """The order the document's overview states is the order of the examples (their x-walkthrough-step)."""
    document = client.get("/openapi.json").json()
    overview = document["info"]["description"]
    stated = {int(n): path for n, path in re.findall(r"(\d+)\. `PUT (/fhir/\w+/[\w-]+)`", overview)}
    carried = {step: url for step, method, path, url, *_ in _runs(document)
               if method == "put" and path.endswith("/{resource_id}")}
    assert stated == carried and len(stated) == len(walk.FIXED_IDS)
