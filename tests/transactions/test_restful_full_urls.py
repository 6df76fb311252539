"""Links to entries whose fullUrl is a RESTful URL (http(s)://base/Type/id), not a urn:uuid placeholder.

bundle.html, "Resolving references in Bundles": "if the reference has the format [type]/[id], and the
fullUrl for the bundle entry containing the resource is a RESTful one ... extract the [base] from the
fullUrl, and append the reference ([type]/[id]) to it, then try to resolve within the bundle".
http.html#trules: "Servers SHALL replace all matching links in the bundle, whether they are found in the
resource ids, resource references, elements of type uri, url, oid, uuid, and <a href="" & <img src="" in
the narrative." What resolves to nothing in the Bundle stays exactly as sent."""
from __future__ import annotations

from tests.transactions.conftest import created, post_bundle
from tests.transactions.test_placeholders import binary, stored
from tests.transactions.test_transaction import patient, post, tx

OTHER = "http://other.org/fhir"


def document(**extra) -> dict:
    return {"resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "url": f"{OTHER}/Binary/b1"}}], **extra}


def test_the_probes_bundle_links_the_document_to_the_created_patient_and_binary(client):
    r = post_bundle(client, tx(post(binary() | {"id": "b1"}, f"{OTHER}/Binary/b1"),
                               post(patient(id="p1"), f"{OTHER}/Patient/p1"),
                               post(document(subject={"reference": "Patient/p1"}), f"{OTHER}/DocumentReference/d1")))
    assert r.status_code == 200, r.text
    out = stored(client, r, 2)
    assert out["subject"]["reference"] == created(r, 1) != "Patient/p1"
    assert out["content"][0]["attachment"]["url"] == created(r, 0)


def test_a_relative_reference_resolves_only_against_the_base_of_the_referring_entry(client):
    r = post_bundle(client, tx(
        post(patient(), f"{OTHER}/Patient/p1"),
        post(patient(), "http://third.org/fhir/Patient/p2"),
        post({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "subject": {"reference": "Patient/p1"}, "focus": [{"reference": "Patient/p2"}],
              "hasMember": [{"reference": "Observation/o9"}]}, f"{OTHER}/Observation/o1"),
        post({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "subject": {"reference": "Patient/p1"}}, "urn:uuid:7d0a1f0e-1111-4c4e-9b0a-000000000001")))
    assert r.status_code == 200, r.text
    with_base = stored(client, r, 2)
    assert with_base["subject"]["reference"] == created(r, 0)
    assert with_base["focus"][0]["reference"] == "Patient/p2"  # another base: not this entry's p2
    assert with_base["hasMember"][0]["reference"] == "Observation/o9"  # no such entry: as sent
    assert stored(client, r, 3)["subject"]["reference"] == "Patient/p1"  # a urn:uuid fullUrl has no base


def test_a_relative_reference_from_an_entry_without_a_restful_full_url_is_read_against_this_server(client):
    """`Patient/tmp` in an entry with no fullUrl, or a urn: one, names a resource on this server, and the
    entry whose fullUrl is this server's [base]/Patient/tmp is that resource: the reference follows it to
    the id it was created with, as an absolute one would."""
    def observation() -> dict:
        return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": "Patient/tmp"}}

    r = post_bundle(client, tx(post(patient(), "http://testserver/fhir/Patient/tmp"), post(observation()),
                               post(observation(), "urn:uuid:7d0a1f0e-1111-4c4e-9b0a-000000000002")))
    assert r.status_code == 200, r.text
    assert created(r, 0) != "Patient/tmp"
    assert stored(client, r, 1)["subject"]["reference"] == created(r, 0)
    assert stored(client, r, 2)["subject"]["reference"] == created(r, 0)


def test_uri_elements_and_narrative_links_equal_to_an_absolute_full_url_are_replaced_whole_only(client):
    div = (f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{OTHER}/Patient/p1">patient</a> '
           f'<img src="{OTHER}/Binary/b1" alt="scan"/> <a href="{OTHER}/Patient/p1/x">not it</a> '
           f'{OTHER}/Patient/p1</div>')
    provenance = {"resourceType": "Provenance", "recorded": "2025-03-03T10:00:00Z",
                  "text": {"status": "generated", "div": div},
                  "target": [{"reference": f"{OTHER}/Patient/p1"}],
                  "policy": [f"{OTHER}/Patient/p1", f"{OTHER}/Patient/p1/_history/1", f"{OTHER}/Patient/p9"],
                  "agent": [{"who": {"reference": "Patient/p1"}}]}
    r = post_bundle(client, tx(post(provenance, f"{OTHER}/Provenance/v1"),
                               post(patient(), f"{OTHER}/Patient/p1"), post(binary(), f"{OTHER}/Binary/b1")))
    assert r.status_code == 200, r.text
    pid, bid = created(r, 1), created(r, 2)
    out = stored(client, r, 0)
    assert out["policy"] == [pid, f"{OTHER}/Patient/p1/_history/1", f"{OTHER}/Patient/p9"]
    assert out["target"][0]["reference"] == out["agent"][0]["who"]["reference"] == pid
    assert out["text"]["div"] == div.replace(f'href="{OTHER}/Patient/p1"', f'href="{pid}"') \
        .replace(f'src="{OTHER}/Binary/b1"', f'src="{bid}"')


def test_a_canonical_url_that_is_also_the_entrys_full_url_stays_a_canonical_url(client):
    system = f"{OTHER}/CodeSystem/colors"  # official examples often use the canonical url as fullUrl
    code_system = {"resourceType": "CodeSystem", "url": system, "status": "active", "content": "complete",
                   "concept": [{"code": "red"}]}
    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": system, "code": "red"}]}}
    r = post_bundle(client, tx(post(code_system, system), post(observation)))
    assert r.status_code == 200, r.text
    assert stored(client, r, 0)["url"] == system
    assert stored(client, r, 1)["code"]["coding"][0]["system"] == system


def test_a_transaction_with_only_urn_uuid_full_urls_keeps_absolute_links_as_sent(client):
    out_of_bundle = f"{OTHER}/Patient/p1"
    patient_placeholder = "urn:uuid:7d0a1f0e-1111-4c4e-9b0a-000000000002"
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/p1"},
                   "focus": [{"reference": out_of_bundle}, {"reference": patient_placeholder}],
                   "extension": [{"url": "http://example.org/x", "valueUri": out_of_bundle}]}
    r = post_bundle(client, tx(post(observation), post(patient(), patient_placeholder)))
    assert r.status_code == 200, r.text
    out = stored(client, r, 0)
    assert out["subject"]["reference"] == "Patient/p1" and out["focus"][0]["reference"] == out_of_bundle
    assert out["extension"][0]["valueUri"] == out_of_bundle
    assert out["focus"][1]["reference"] == created(r, 1)


def test_version_specific_references_to_a_created_entry_are_rewritten_to_its_version(client):
    """bundle.html, Resolving references: "If the reference is version specific (either relative or
    absolute), then remove the version from the URL before matching fullUrl". The created resource
    exists in version 1."""
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/tmp1/_history/1"},
                   "focus": [{"reference": f"{OTHER}/Patient/tmp1/_history/1"}, {"reference": "Patient/tmp1"},
                             {"reference": "urn:uuid:5f7a8c4e-0000-4000-8000-000000000001/_history/1"}]}
    r = post_bundle(client, tx(post(patient(), f"{OTHER}/Patient/tmp1"),
                               post(patient(), "urn:uuid:5f7a8c4e-0000-4000-8000-000000000001"),
                               post(observation, f"{OTHER}/Observation/o1")))
    assert r.status_code == 200, r.text
    out = stored(client, r, 2)
    patient_ref = created(r, 0)
    assert out["subject"]["reference"] == f"{patient_ref}/_history/1"
    assert [f["reference"] for f in out["focus"]] == [f"{patient_ref}/_history/1", patient_ref,
                                                       f"{created(r, 1)}/_history/1"]
    assert client.get(f"/fhir/{out['subject']['reference']}").status_code == 200


def test_a_version_specific_reference_to_an_entry_its_if_none_exist_matched_names_the_current_version(client):
    """The entry writes nothing: the resource it stands for is the existing one, in its current version,
    not the version 1 a created one would have, nor whatever version the client guessed."""
    existing = patient(identifier=[{"system": "urn:mrn", "value": "v-1"}])
    first = client.put("/fhir/Patient/kept", json={**existing, "id": "kept"})
    assert first.status_code == 201
    assert client.put("/fhir/Patient/kept", json={**existing, "id": "kept", "active": True}).status_code == 200
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/tmp1/_history/1"}}
    r = post_bundle(client, tx(post(existing, f"{OTHER}/Patient/tmp1", ifNoneExist="identifier=urn:mrn|v-1"),
                               post(observation, f"{OTHER}/Observation/o1")))
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("200")
    assert stored(client, r, 1)["subject"]["reference"] == "Patient/kept/_history/2"
