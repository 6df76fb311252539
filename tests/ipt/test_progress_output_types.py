"""$ipt-progress answers with exactly the parameters and types its OperationDefinition declares: a client
generated from the definition reads `phq9Change` as valueDecimal and `nextSession.start` as valueDateTime,
whatever the figures happen to be (a whole-number change, a session planned for a day without a time)."""
from __future__ import annotations

from tests.domain.world import World, goal, phq9

from .helpers import load_world, put, read


def _value_keys(parameter: dict) -> list[str]:
    return [k for k in parameter if k.startswith("value")]


def _check_against(declared: list[dict], given: list[dict], where: str) -> None:
    by_name = {d["name"]: d for d in declared}
    for p in given:
        assert p["name"] in by_name, f"{where}{p['name']} is not declared"
        d = by_name[p["name"]]
        assert d["use"] == "out" or where, d
        if "type" in d:
            wanted = "value" + d["type"][0].upper() + d["type"][1:]
            assert _value_keys(p) == [wanted] and "part" not in p, (f"{where}{p['name']}", p, wanted)
        else:
            assert not _value_keys(p), (f"{where}{p['name']}", p)
            _check_against(d["part"], p["part"], f"{where}{p['name']}.")
    for d in declared:
        count = sum(1 for p in given if p["name"] == d["name"])
        assert count >= d["min"], f"{where}{d['name']} is required"
        assert d["max"] == "*" or count <= int(d["max"]), f"{where}{d['name']} appears {count} times"


def test_every_output_parameter_has_its_declared_type(client):
    load_world(client, World(sessions=12))
    held = read(client, "Encounter/s1")
    held["status"] = "finished"
    assert put(client, held).status_code == 200
    nxt = read(client, "Encounter/s2")
    nxt["period"] = {"start": "2025-01-13"}  # planned for the day, no time yet: a dateTime all the same
    assert put(client, nxt).status_code == 200
    assert put(client, goal("g1", ["Condition/pa1"])).status_code in (200, 201)
    # two whole-number scores: the change (-6) is whole too, and still a decimal
    assert put(client, phq9("o1", 18, "2025-01-06", encounter="Encounter/s1")).status_code == 201
    assert put(client, phq9("o2", 12, "2025-01-07T09:00:00Z")).status_code == 201

    definition = client.get("/fhir/OperationDefinition/ipt-progress").json()
    answer = client.get("/fhir/CarePlan/plan/$ipt-progress").json()
    names = {p["name"] for p in answer["parameter"]}
    assert {"phq9Baseline", "phq9Latest", "phq9Change", "problemArea", "goal", "nextSession"} <= names
    _check_against(definition["parameter"], answer["parameter"], "")

    values = {p["name"]: p for p in answer["parameter"]}
    assert values["phq9Change"]["valueDecimal"] == -6
    assert values["phq9Baseline"]["part"][1] == {"name": "date", "valueDateTime": "2025-01-06"}
    start = next(q for q in values["nextSession"]["part"] if q["name"] == "start")
    assert start == {"name": "start", "valueDateTime": "2025-01-13"}
