"""Conditional creates (entry.request.ifNoneExist) in transactions and batches, http.html#ccreate: "No
matches: The server processes the create as normal"; and conditional updates that match nothing, which
create as well (http.html#cond-update). The key such a create claims
(conditional_create_key) only stops a create while the resource that claimed it still matches the criteria,
as on the REST path (services/resources.py matching_key_owner)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from ipt_fhir.services import bundle_processing
from ipt_fhir.services.resources import ResourceService, criteria_key, parse_criteria
from ipt_fhir.store.tables import ConditionalCreateKey
from tests.conftest import FIXTURES
from tests.transactions.conftest import post_bundle
from tests.transactions.test_transaction import patient, post, put, tx

XDS = FIXTURES / "hl7-r4-examples" / "bundles" / "Bundle-xds.json"
CRITERIA = "identifier=urn:k|1"


def keyed_patient(value: str = "1", **extra) -> dict:
    return patient(identifier=[{"system": "urn:k", "value": value}], **extra)


def conditional_create(resource: dict, kind: str = "transaction", criteria: str = CRITERIA) -> dict:
    return tx(post(resource, ifNoneExist=criteria), kind=kind)


def entry_response(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()["entry"][0]["response"]


def created_id(response: dict) -> str:
    return response["location"].split("/")[1]


def patient_count(client, query: str = "") -> int:
    return client.get(f"/fhir/Patient?_summary=count{query}").json()["total"]


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_criteria_that_never_match_what_they_created_create_again_on_every_send(client, kind):
    bundle = conditional_create(patient(), kind, "identifier=urn:never|x")  # the patient has no identifier
    first = entry_response(post_bundle(client, bundle))
    second = entry_response(post_bundle(client, bundle))
    assert first["status"] == second["status"] == "201 Created"
    assert created_id(first) != created_id(second)
    assert patient_count(client) == 2


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_created_resource_updated_so_it_no_longer_matches_lets_the_criteria_create_again(client, kind):
    first = entry_response(post_bundle(client, conditional_create(keyed_patient(), kind)))
    assert first["status"] == "201 Created"
    moved = created_id(first)
    assert client.put(f"/fhir/Patient/{moved}", json=keyed_patient("2", id=moved)).status_code == 200

    again = entry_response(post_bundle(client, conditional_create(keyed_patient(), kind)))
    assert again["status"] == "201 Created" and created_id(again) != moved
    # the new resource holds the key now: the criteria match it, so the next send reuses it
    reused = entry_response(post_bundle(client, conditional_create(keyed_patient(), kind)))
    assert reused["status"] == "200 OK" and created_id(reused) == created_id(again)
    assert patient_count(client, "&identifier=urn:k|1") == 1


def test_the_official_xds_example_can_be_sent_twice(client):
    bundle = XDS.read_bytes()  # its Patient's ifNoneExist never matches the Patient it creates
    for _ in range(2):
        r = post_bundle(client, bundle)
        assert r.status_code == 200, r.text
        assert all(e["response"]["status"] == "201 Created" for e in r.json()["entry"])
    assert patient_count(client) == 2


def test_two_entries_with_the_same_criteria_matching_nothing_fail_the_transaction_naming_both(client):
    r = post_bundle(client, tx(post(keyed_patient(), ifNoneExist=CRITERIA),
                               post(keyed_patient(gender="female"), ifNoneExist="identifier=urn:k%7C1")))
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].request.ifNoneExist"]
    assert "entry 0" in issue["diagnostics"] and "retry" not in issue["diagnostics"]
    assert patient_count(client) == 0


def test_two_entries_with_the_same_criteria_matching_one_resource_both_answer_with_it(client):
    existing = client.post("/fhir/Patient", json=keyed_patient()).json()["id"]
    r = post_bundle(client, tx(post(keyed_patient(), ifNoneExist=CRITERIA),
                               post(keyed_patient(), ifNoneExist=CRITERIA)))
    assert r.status_code == 200, r.text
    assert [(e["response"]["status"], created_id(e["response"])) for e in r.json()["entry"]] \
        == [("200 OK", existing), ("200 OK", existing)]


def conditional_update(resource: dict, criteria: str = CRITERIA) -> dict:
    return put(resource, f"{resource['resourceType']}?{criteria}")


def test_two_conditional_updates_with_the_same_criteria_matching_nothing_fail_the_transaction(client):
    """Each would create: the criteria would then match two Patients, as two conditional creates would."""
    r = post_bundle(client, tx(conditional_update(keyed_patient()),
                               conditional_update(keyed_patient(gender="female"), "identifier=urn:k%7C1")))
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].request.url"]
    assert "entry 0" in issue["diagnostics"]
    assert patient_count(client) == 0


def test_a_conditional_create_and_update_with_the_same_criteria_matching_nothing_fail_the_transaction(client):
    r = post_bundle(client, tx(post(keyed_patient(), ifNoneExist=CRITERIA), conditional_update(keyed_patient())))
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]
    assert patient_count(client) == 0


def test_a_conditional_update_that_created_holds_the_criteria_as_a_rest_one_does(client, database):
    """The key it claims is the one a REST conditional create with those criteria checks (a race between
    the two, below, cannot create two)."""
    created = entry_response(post_bundle(client, tx(conditional_update(keyed_patient()))))
    assert created["status"] == "201 Created"
    key = criteria_key("Patient", parse_criteria([("identifier", "urn:k|1")]))
    with database.read() as conn:  # claimed under the key REST computes, naming the created resource
        owner = conn.execute(sa.select(ConditionalCreateKey.__table__.c.resource_id).where(
            ConditionalCreateKey.__table__.c.criteria_hash == key)).scalar_one_or_none()
    assert owner == created_id(created)
    rest = client.post("/fhir/Patient", json=keyed_patient(), headers={"If-None-Exist": CRITERIA})
    assert rest.status_code == 200 and rest.json()["id"] == created_id(created)
    again = entry_response(post_bundle(client, tx(conditional_update(keyed_patient(gender="male")))))
    assert again["status"] == "200 OK" and created_id(again) == created_id(created)
    assert patient_count(client) == 1


def test_in_a_batch_the_second_of_two_conditional_updates_with_the_same_criteria_does_not_create(client):
    """The first creates; the second then matches what the first wrote, which a batch, like a
    transaction, refuses as two entries acting on one resource."""
    r = post_bundle(client, tx(conditional_update(keyed_patient()),
                               conditional_update(keyed_patient(gender="female")), kind="batch"))
    responses = [e["response"] for e in r.json()["entry"]]
    assert [x["status"] for x in responses] == ["201 Created", "400"]
    assert "entry 0" in responses[1]["outcome"]["issue"][0]["diagnostics"]
    assert patient_count(client) == 1


def test_in_a_batch_the_second_of_two_entries_with_the_same_criteria_answers_with_the_first(client):
    r = post_bundle(client, tx(post(keyed_patient(), ifNoneExist=CRITERIA),
                               post(keyed_patient(), ifNoneExist=CRITERIA), kind="batch"))
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "200 OK"]
    assert patient_count(client) == 1


# --- a concurrent conditional create that commits between the entry's search and its claim ------------

@pytest.fixture
def rival_commits_before_the_claim(database, monkeypatch):
    """Once, right after the entry's criteria were searched (and matched nothing), another request with
    the same criteria creates a matching Patient and commits: what PostgreSQL's READ COMMITTED lets the
    transaction see next. SQLite's single writer rules this interleaving out."""
    if database.dialect != "postgresql":
        pytest.skip("only PostgreSQL lets another writer commit inside a unit of work")
    settle = bundle_processing._Writer.settle_target
    winner: list[str] = []

    def settle_then_lose_the_race(writer, entry):
        settle(writer, entry)
        if not winner and entry.creation is not None:
            result = ResourceService(database).create("Patient", keyed_patient(), if_none_exist=CRITERIA)
            winner.append(result.version.id)

    monkeypatch.setattr(bundle_processing._Writer, "settle_target", settle_then_lose_the_race)
    return winner


def test_a_transaction_that_loses_the_race_runs_again_and_answers_with_the_winner(
        client, rival_commits_before_the_claim):
    """Its unit of work rolled back whole; run again, its entry finds the winner, as a batch entry and the
    REST call do (it answered 409 and left the retry to the client)."""
    r = post_bundle(client, conditional_create(keyed_patient()))
    assert r.status_code == 200, r.text
    response = r.json()["entry"][0]["response"]
    assert response["status"] == "200 OK" and created_id(response) == rival_commits_before_the_claim[0]
    assert patient_count(client) == 1


def test_a_batch_entry_that_loses_the_race_answers_with_the_winner_as_rest_does(
        client, rival_commits_before_the_claim):
    response = entry_response(post_bundle(client, conditional_create(keyed_patient(), "batch")))
    assert response["status"] == "200 OK" and created_id(response) == rival_commits_before_the_claim[0]
    assert patient_count(client) == 1


def test_a_transaction_whose_conditional_update_loses_the_race_runs_again_and_updates_the_winner(
        client, rival_commits_before_the_claim):
    r = post_bundle(client, tx(conditional_update(keyed_patient(gender="female"))))
    assert r.status_code == 200, r.text
    response = r.json()["entry"][0]["response"]
    assert response["status"] == "200 OK" and created_id(response) == rival_commits_before_the_claim[0]
    assert client.get(f"/fhir/Patient/{rival_commits_before_the_claim[0]}").json()["gender"] == "female"
    assert patient_count(client) == 1


def test_a_batch_conditional_update_that_loses_the_race_updates_the_winner_as_rest_does(
        client, rival_commits_before_the_claim):
    response = entry_response(post_bundle(client, tx(conditional_update(keyed_patient(gender="female")), kind="batch")))
    assert response["status"] == "200 OK" and created_id(response) == rival_commits_before_the_claim[0]
    assert client.get(f"/fhir/Patient/{rival_commits_before_the_claim[0]}").json()["gender"] == "female"
    assert patient_count(client) == 1


def test_if_none_exist_is_read_as_the_rest_header_is(client):
    """Criteria whose value holds a "?" keep it; a leading "[type]?" must name the entry's type."""
    system = "http://example.org/ids?kind=mrn"
    question = patient(identifier=[{"system": system, "value": "7"}])
    criteria = f"identifier={system}|7"
    first = entry_response(post_bundle(client, conditional_create(question, criteria=criteria)))
    assert first["status"].startswith("201")
    again = entry_response(post_bundle(client, conditional_create(question, criteria=f"Patient?{criteria}")))
    assert again["status"].startswith("200") and created_id(again) == created_id(first)
    wrong = post_bundle(client, conditional_create(keyed_patient(), criteria=f"Observation?{CRITERIA}"))
    assert wrong.status_code == 400
    assert wrong.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.ifNoneExist"]
