"""A transaction that goes past a protocol's session limit is refused at the entry that crosses it.

Rule checks in a transaction run once every entry is written (a session may come before its plan), so
each check sees the whole Bundle's sessions; the count toward a limit is the plan's as of that entry's
write, and the OperationOutcome points at the first entry past the limit, not at the first session."""
from __future__ import annotations

import copy

from ipt_fhir.domain.canonical import EXT_SESSION_NUMBER, is_ipt_url
from tests.domain.world import World

from .helpers import errors, expressions, load_world, read, transaction

PATIENT = {"resourceType": "Patient", "id": "p2"}  # entry 0: shows the whole Bundle rolled back


def _extra_sessions(client) -> list[dict]:
    """Sessions 19-22 of a standard individual plan (at most 20), in the week after session 18."""
    last = read(client, "Encounter/s18")
    out = []
    for n in range(19, 23):
        session = copy.deepcopy(last)
        session["id"] = f"s{n}"
        session["meta"] = {"profile": last["meta"]["profile"]}
        session["period"] = {"start": f"2025-05-{n - 13:02d}T09:00:00Z"}
        for ext in session["extension"]:
            if is_ipt_url(ext["url"], "StructureDefinition", EXT_SESSION_NUMBER):
                ext["valuePositiveInt"] = n
        out.append(session)
    return out


def _refused_at(response, entry: int) -> list[dict]:
    assert response.status_code == 422, response.text
    found = errors(response)
    assert found and all(e.startswith(f"Bundle.entry[{entry}].") for e in expressions(found)), expressions(found)
    return found


def test_sessions_past_the_maximum_blame_the_twenty_first(client):
    load_world(client, World(sessions=18))
    r = client.post("/fhir", json=transaction([PATIENT, *_extra_sessions(client)]))
    found = _refused_at(r, 3)  # entries 1 and 2 are sessions 19 and 20: within the limit
    assert "session number 21 exceeds" in found[0]["diagnostics"]
    assert client.get("/fhir/Patient/p2").status_code == 404  # the whole transaction rolled back
    assert client.get("/fhir/Encounter/s19").status_code == 404


def test_sessions_up_to_the_maximum_are_accepted(client):
    load_world(client, World(sessions=18))
    r = client.post("/fhir", json=transaction([PATIENT, *_extra_sessions(client)[:2]]))
    assert r.status_code == 200, r.text


def test_courses_ordering_past_the_maximum_blame_the_one_that_crosses_it(client):
    load_world(client, World(sessions=12))  # its course orders 12 of the protocol's at most 20
    course = read(client, "ServiceRequest/course")
    extra = []
    for n, sessions in ((1, 4), (2, 4), (3, 4)):  # 16, 20, then 24
        more = copy.deepcopy(course)
        more["meta"] = {"profile": course["meta"]["profile"]}
        more["id"] = f"more{n}"
        more["quantityQuantity"]["value"] = sessions
        more["occurrenceTiming"]["repeat"]["count"] = sessions
        extra.append(more)
    r = client.post("/fhir", json=transaction([PATIENT, *extra]))
    found = _refused_at(r, 3)
    assert "24 sessions ordered" in found[0]["diagnostics"]
    assert expressions(found) == ["Bundle.entry[3].resource.quantity"]
