"""The server's own conformance resources are stored resources: searched, sorted and paged with the
others, _elements/_summary subset them (SUBSETTED), conditional read honours If-None-Match and
If-Modified-Since, and their Last-Modified is the meta.lastUpdated they show."""
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
    pages = _walk(client, "/fhir/PlanDefinition?_count=2&_sort=_id")
    assert [_ids(p) for p in pages] == [OURS[0:2], OURS[2:4], OURS[4:5]]
    assert all(p["total"] == 5 for p in pages)
    assert _ids(client.get(_link(pages[1], "previous")).json()) == OURS[0:2]


def test_they_sort_and_page_among_stored_ones_as_one_result(client):
    """search.html#_sort orders the whole result: the server's resources are no block of their own."""
    for pid in ("a-stored", "j-stored", "z-stored"):
        _stored_plan(client, pid)
    everything = sorted(OURS + ["a-stored", "j-stored", "z-stored"])
    pages = _walk(client, "/fhir/PlanDefinition?_count=3&_sort=-_id")
    assert [i for p in pages for i in _ids(p)] == everything[::-1]
    assert all(p["total"] == 8 for p in pages)
    by_title = _ids(client.get("/fhir/PlanDefinition?_sort=title&_count=50").json())
    titles = {e["resource"]["id"]: e["resource"]["title"]
              for e in client.get("/fhir/PlanDefinition?_count=50").json()["entry"]}
    assert by_title == sorted(titles, key=lambda i: titles[i].casefold())


def test_every_claimed_parameter_and_search_form_finds_them(client):
    """They are stored resources: any parameter the CapabilityStatement claims, an ignored one, a system
    search by _type and a batch's search entry match them as they match stored resources."""
    def ids(url: str) -> list[str]:
        return sorted(_ids(client.get(url).json()))

    assert ids("/fhir/PlanDefinition?foo=bar") == OURS  # ignored (with a warning): no filter at all
    assert ids("/fhir/PlanDefinition?date=ge2000") == OURS
    assert ids("/fhir/PlanDefinition?status:missing=false") == OURS
    assert ids("/fhir/PlanDefinition?status=http://bogus.org|active") == []
    assert ids("/fhir?_type=PlanDefinition") == OURS
    batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch",
                                       "entry": [{"request": {"method": "GET", "url": "PlanDefinition"}}]}).json()
    assert sorted(_ids(batch["entry"][0]["resource"])) == OURS


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


def test_a_restart_writes_nothing_and_a_new_canonical_base_a_new_version(client):
    """Each start stores what changed: nothing when the code's resources are the stored ones (cached
    copies stay valid), a new version of each when IPT_FHIR_CANONICAL_BASE moves their URLs."""
    from ipt_fhir.services.ipt import conformance
    from ipt_fhir.services.ipt.publish import publish

    db, configured = client.app.state.database, client.app.state.ipt_conformance
    assert publish(db, configured) == 0
    moved = conformance.ConformanceRegistry("https://fhir.example.org/ipt")
    assert publish(db, moved) == len(moved.resources)
    assert publish(db, configured) == len(configured.resources)  # the configured base back
    brief = client.get("/fhir/PlanDefinition/ipt-brief").json()
    assert brief["meta"]["versionId"] == "3" and brief["url"].startswith("http://ipt-fhir.org/")
    assert client.get("/fhir/PlanDefinition/ipt-brief/_history/2").json()["url"].startswith("https://fhir.example.org/")
    assert client.get("/fhir/PlanDefinition?url=https://fhir.example.org/ipt/PlanDefinition/ipt-brief").json()["total"] == 0


def test_head_answers_as_get_does_for_the_servers_history_and_search(client):
    """HEAD is served where GET is (http.html#read): the headers of the GET, no body."""
    _stored_plan(client, "stored-a")
    for url in ("/fhir/PlanDefinition/ipt-brief/_history", "/fhir/PlanDefinition"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == str(len(got.content))

