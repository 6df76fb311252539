"""The searchset's self link encodes the parameters actually used to process the search (search.html:
"the server SHALL return the parameters that were actually used to process the search ... encoded in
the self link"), and first/previous/next carry exactly those: never an ignored parameter.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from .harness import put

BASE = "http://testserver/fhir"


@pytest.fixture
def seeded(database, client):
    for pid, family in (("p1", "Muller"), ("p2", "Muller"), ("p3", "Ng")):
        put(database, {"resourceType": "Patient", "id": pid, "name": [{"family": family}],
                       "identifier": [{"system": "urn:s", "value": f"u{pid[1]}"}], "birthDate": f"198{pid[1]}-01-01"})
    for i in range(3):
        put(database, {"resourceType": "Encounter", "id": f"e{i}", "status": "finished", "class": {"code": "AMB"},
                       "subject": {"reference": "Patient/p1"}})
    return client


def links(bundle: dict) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def names(url: str) -> set[str]:
    return {n for n, _ in query(url)}


def warned(bundle: dict) -> set[str]:
    outcomes = [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    return {x for o in outcomes for i in o["issue"] for x in i.get("expression", [])}


def test_an_unknown_parameter_is_reported_and_left_out_of_every_link(seeded):
    r = seeded.get("/fhir/Patient?foo=bar&_count=1")
    assert r.status_code == 200
    b = r.json()
    assert "foo" in warned(b)
    got = links(b)
    assert set(got) == {"self", "first", "next"}
    assert got["self"] == got["first"] == f"{BASE}/Patient?_count=1"
    assert "foo" not in names(got["next"]) and names(got["next"]) == {"_count", "_page"}


@pytest.mark.parametrize("ignored", [
    "_content=heart", "_text=heart", "_list=l1", "_filter=name eq x", "_contained=true",
    "_containedType=contained", "_since=2020-01-01T00:00:00Z", "_type=Observation", "general-practitioner.bogus=x",
])
def test_ignored_parameters_are_not_in_the_links(seeded, ignored):
    r = seeded.get(f"/fhir/Patient?{ignored}&family=muller&_count=1")
    assert r.status_code == 200, r.text
    b = r.json()
    name = ignored.split("=", 1)[0]
    assert name in warned(b)
    for relation, url in links(b).items():
        assert name not in names(url), (relation, url)
        assert ("family", "muller") in query(url) and ("_count", "1") in query(url)
    assert {e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match"} <= {"p1", "p2"}


def test_an_ignored_sort_key_is_left_out_and_the_used_ones_kept(seeded):
    b = seeded.get("/fhir/Patient?_sort=bogus,-birthdate&_count=2").json()
    assert "_sort" in warned(b)
    got = links(b)
    assert query(got["self"]) == [("_sort", "-birthdate"), ("_count", "2")]
    assert ("_sort", "-birthdate") in query(got["next"])
    b = seeded.get("/fhir/Patient?_sort=bogus").json()
    assert "_sort" not in names(links(b)["self"])


def test_the_count_in_the_links_is_the_page_size_used(seeded):
    b = seeded.get("/fhir/Patient?_count=100000").json()
    assert query(links(b)["self"]) == [("_count", "1000")]  # IPT_FHIR_MAX_PAGE_SIZE


def test_post_search_encodes_query_and_body_parameters_like_a_get(seeded):
    r = seeded.post("/fhir/Patient/_search?_count=1", data={"family": "muller", "foo": "bar"})
    assert r.status_code == 200
    b = r.json()
    got = links(b)
    assert got["self"] == got["first"] == f"{BASE}/Patient?_count=1&family=muller"
    assert set(query(got["next"])) >= {("_count", "1"), ("family", "muller")}
    # the self link is a GET that answers the same search
    again = seeded.get(got["self"].replace("http://testserver", "")).json()
    assert [e["resource"]["id"] for e in again["entry"]] == [e["resource"]["id"] for e in b["entry"]
                                                             if e["search"]["mode"] == "match"]


def test_self_is_percent_encoded_like_the_other_links(seeded):
    b = seeded.get("/fhir/Patient?identifier=urn:s|u1&_count=1&name=mul ler").json()
    got = links(b)
    assert got["self"] == got["first"]
    assert "identifier=urn%3As%7Cu1" in got["self"] and "|" not in got["self"]


def test_the_self_link_of_a_later_page_is_the_link_that_led_to_it(seeded):
    first = seeded.get("/fhir/Patient?family=muller&foo=1&_count=1").json()
    nxt = links(first)["next"]
    second = seeded.get(nxt.replace("http://testserver", "")).json()
    assert links(second)["self"] == nxt
    assert links(second)["first"] == links(first)["first"]


def test_summary_count_self_link(seeded):
    b = seeded.get("/fhir/Patient?_summary=count&foo=1&family=muller").json()
    assert b["total"] == 2
    assert query(links(b)["self"]) == [("_summary", "count"), ("family", "muller")]


def test_compartment_system_and_everything_links_leave_ignored_parameters_out(seeded):
    b = seeded.get("/fhir/Patient/p1/Encounter?foo=1&_count=2").json()
    assert links(b)["self"] == f"{BASE}/Patient/p1/Encounter?_count=2"
    b = seeded.get("/fhir?_type=Patient&foo=1&_count=2").json()
    assert links(b)["self"] == f"{BASE}?_type=Patient&_count=2"
    b = seeded.get("/fhir/Patient/p1/$everything?foo=1&_count=2").json()
    assert "foo" in warned(b)
    assert links(b)["self"] == f"{BASE}/Patient/p1/$everything?_count=2"
    assert names(links(b)["next"]) == {"_count", "_page"}


def test_strict_handling_still_refuses_what_lenient_handling_leaves_out(seeded):
    for q in ("foo=bar", "_type=Observation", "_since=2020-01-01T00:00:00Z", "_sort=bogus"):
        r = seeded.get(f"/fhir/Patient?{q}", headers={"Prefer": "handling=strict"})
        assert r.status_code == 400, q
