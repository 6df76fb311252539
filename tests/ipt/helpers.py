"""Loading the in-memory IPT world of tests/domain into the server, and small HTTP helpers."""
from __future__ import annotations

import copy

from tests.domain.world import World

FHIR_JSON = {"Content-Type": "application/fhir+json"}
OUTCOME = {"Prefer": "return=OperationOutcome"}


def transaction(resources: list[dict], method: str = "PUT") -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"http://testserver/fhir/{r['resourceType']}/{r['id']}", "resource": r,
         "request": {"method": method, "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


def load_world(client, world: World | None = None) -> World:
    """Store the world's resources (ids kept) in one transaction; returns the world."""
    world = world or World()
    people = [{"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "other"},
              {"resourceType": "Practitioner", "id": "t1"}]
    r = client.post("/fhir", json=transaction(people + copy.deepcopy(world.resources)))
    assert r.status_code == 200, r.text
    return world


def read(client, ref: str) -> dict:
    r = client.get(f"/fhir/{ref}")
    assert r.status_code == 200, r.text
    return r.json()


def put(client, resource: dict, **headers):
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                      headers={**FHIR_JSON, **headers})


def issues(response) -> list[dict]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body.get("issue", [])


def errors(response) -> list[dict]:
    return [i for i in issues(response) if i["severity"] in ("error", "fatal")]


def warnings(response) -> list[dict]:
    return [i for i in issues(response) if i["severity"] == "warning"]


def expressions(found: list[dict]) -> list[str]:
    return [e for i in found for e in i.get("expression", [])]


def progress(client, plan_id: str) -> dict:
    r = client.get(f"/fhir/CarePlan/{plan_id}/$ipt-progress")
    assert r.status_code == 200, r.text
    out: dict = {}
    for p in r.json()["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if "part" in p:
            value = {q["name"]: next((v for k, v in q.items() if k.startswith("value")), None) for q in p["part"]}
        if p["name"] in out:
            out[p["name"]] = (out[p["name"]] if isinstance(out[p["name"]], list) else [out[p["name"]]]) + [value]
        else:
            out[p["name"]] = value
    return out
