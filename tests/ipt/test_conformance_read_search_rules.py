"""The server's own conformance resources (served from memory) follow the read and search rules of stored
resources: _count pages them, _elements/_summary subset them (SUBSETTED), conditional read honours
If-None-Match and If-Modified-Since, and their Last-Modified is the meta.lastUpdated they show."""
from __future__ import annotations

from email.utils import format_datetime, parsedate_to_datetime
from datetime import datetime, timedelta

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
OURS = ["ipt-brief", "ipt-dynamic-interpersonal", "ipt-maintenance", "ipt-standard-individual", "ipt-who-group"]


def _ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _link(bundle: dict, relation: str) -> str | None:
    url = next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)
    return url.replace("http://testserver", "") if url else None


def _walk(client, url: str) -> list[dict]:
    pages = []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        url = _link(pages[-1], "next")
    return pages


def _stored_plan(client, pid: str) -> None:
    r = client.put(f"/fhir/PlanDefinition/{pid}", json={"resourceType": "PlanDefinition", "id": pid,
                                                        "status": "draft", "title": pid})
    assert r.status_code == 201, r.text


def test_count_pages_the_servers_own_resources(client):
    pages = _walk(client, "/fhir/PlanDefinition?_count=2")
    assert [_ids(p) for p in pages] == [OURS[0:2], OURS[2:4], OURS[4:5]]
    assert all(p["total"] == 5 for p in pages)
    assert _link(pages[1], "previous") == _link(pages[0], "self")
    assert _link(pages[2], "first") == "/fhir/PlanDefinition?_count=2"


def test_paging_continues_from_the_servers_resources_into_stored_ones_and_back(client):
    for pid in ("stored-a", "stored-b", "stored-c"):
        _stored_plan(client, pid)
    pages = _walk(client, "/fhir/PlanDefinition?_count=2")
    assert [_ids(p) for p in pages] == [OURS[0:2], OURS[2:4], [OURS[4], "stored-a"], ["stored-b", "stored-c"]]
    assert all(p["total"] == 8 for p in pages)
    back = client.get(_link(pages[3], "previous")).json()
    assert _ids(back) == [OURS[4], "stored-a"]
    assert _ids(client.get(_link(back, "previous")).json()) == OURS[2:4]


def test_stored_matches_follow_when_the_servers_resources_fill_their_last_page_exactly(client):
    for pid in ("stored-a", "stored-b", "stored-c"):
        _stored_plan(client, pid)
    pages = _walk(client, "/fhir/PlanDefinition?_count=5")
    assert [_ids(p) for p in pages] == [OURS, ["stored-a", "stored-b", "stored-c"]]
    assert _link(pages[1], "previous") == _link(pages[0], "self")
    ones = _walk(client, "/fhir/PlanDefinition?_count=1")
    assert [i for p in ones for i in _ids(p)] == OURS + ["stored-a", "stored-b", "stored-c"]
    assert all(p["total"] == 8 for p in ones)
    back = client.get(_link(ones[6], "previous")).json()  # from the second stored page to the first
    assert _ids(back) == ["stored-a"]
    assert _ids(client.get(_link(back, "previous")).json()) == [OURS[4]]


def test_stored_matches_share_the_page_of_the_servers_last_ones(client):
    _stored_plan(client, "stored-a")
    bundle = client.get("/fhir/PlanDefinition").json()
    assert _ids(bundle) == OURS + ["stored-a"] and bundle["total"] == 6
    assert _link(bundle, "next") is None


def test_count_zero_and_summary_count_give_the_total_only(client):
    for query in ("_count=0", "_count=00", "_summary=count"):
        bundle = client.get(f"/fhir/PlanDefinition?{query}").json()
        assert bundle["total"] == 5 and "entry" not in bundle


def test_count_is_read_as_the_stored_search_reads_it(client):
    """An empty _count is ignored (search.html#errors) and a malformed one is a 400, never a 500."""
    for query in ("_count=", "_count=2&_count="):
        r = client.get(f"/fhir/PlanDefinition?{query}")
        assert r.status_code == 200, r.text
        assert len(_ids(r.json())) == (2 if "_count=2" in query else 5)
    assert client.get("/fhir/PlanDefinition?_count=x").status_code == 400


def test_elements_subsets_search_results_and_marks_them(client):
    bundle = client.get("/fhir/PlanDefinition?_elements=title").json()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert set(resource) == {"resourceType", "id", "meta", "title", "status"}  # status: mandatory
        assert SUBSETTED in resource["meta"]["tag"]
    assert "_elements=title" in _link(bundle, "self")


def test_summary_subsets_search_results(client):
    resource = client.get("/fhir/PlanDefinition?_summary=true&_id=ipt-brief").json()["entry"][0]["resource"]
    assert SUBSETTED in resource["meta"]["tag"]
    assert "action" not in resource and resource["title"] == "Brief IPT course"


def test_elements_and_summary_subset_a_read_and_a_vread(client):
    for url in ("/fhir/PlanDefinition/ipt-brief", "/fhir/PlanDefinition/ipt-brief/_history/1"):
        resource = client.get(url, params={"_elements": "title"}).json()
        assert set(resource) == {"resourceType", "id", "meta", "title", "status"}
        assert SUBSETTED in resource["meta"]["tag"]
        assert "action" not in client.get(url, params={"_summary": "true"}).json()


def test_conditional_read_honours_if_modified_since_and_if_none_match(client):
    r = client.get("/fhir/PlanDefinition/ipt-brief")
    modified = parsedate_to_datetime(r.headers["Last-Modified"])
    later = format_datetime(modified + timedelta(days=1), usegmt=True)
    earlier = format_datetime(modified - timedelta(days=1), usegmt=True)
    assert client.get("/fhir/PlanDefinition/ipt-brief", headers={"If-Modified-Since": later}).status_code == 304
    assert client.get("/fhir/PlanDefinition/ipt-brief",
                      headers={"If-Modified-Since": r.headers["Last-Modified"]}).status_code == 304
    assert client.get("/fhir/PlanDefinition/ipt-brief", headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get("/fhir/PlanDefinition/ipt-brief", headers={"If-None-Match": '"1"'}).status_code == 304
    assert client.get("/fhir/PlanDefinition/ipt-brief", headers={"If-None-Match": 'W/"2", W/"1"'}).status_code == 304
    assert client.get("/fhir/PlanDefinition/ipt-brief", headers={"If-None-Match": 'W/"2"'}).status_code == 200


def test_last_modified_is_the_lastupdated_the_resource_shows(client):
    r = client.get("/fhir/OperationDefinition/ipt-progress")
    shown = datetime.fromisoformat(r.json()["meta"]["lastUpdated"])
    assert parsedate_to_datetime(r.headers["Last-Modified"]) == shown.replace(microsecond=0)


def test_lastupdated_is_the_package_date_not_the_start_of_the_server(client):
    """A restart must not make every cached copy stale: the instant comes from the package's content."""
    from ipt_fhir.domain.conformance_loader import load_conformance

    newest = max(r["date"][:10] for r in load_conformance("") if "date" in r)
    shown = client.get("/fhir/PlanDefinition/ipt-brief").json()["meta"]["lastUpdated"]
    assert shown == f"{newest}T00:00:00.000+00:00"


def test_head_answers_as_get_does_for_the_servers_history_and_search(client):
    """HEAD is served where GET is (http.html#read): the headers of the GET, no body."""
    _stored_plan(client, "stored-a")
    for url in ("/fhir/PlanDefinition/ipt-brief/_history", "/fhir/PlanDefinition"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == str(len(got.content))

