"""http.html#transaction: "Servers SHALL replace all matching links in the bundle, whether they are found in
the resource ids, resource references, elements of type uri, url, oid, uuid, and <a href="" & <img src=""
in the narrative." Only whole values equal to a placeholder fullUrl of the Bundle are links."""
from __future__ import annotations

from tests.transactions.conftest import created, post_bundle
from tests.transactions.test_transaction import patient, post, tx

BINARY = "urn:uuid:5d0a1f0e-1111-4c4e-9b0a-000000000001"
PATIENT = "urn:uuid:5d0a1f0e-1111-4c4e-9b0a-000000000002"
POLICY = "urn:oid:1.2.840.99999.7"
ELSEWHERE = "urn:uuid:5d0a1f0e-1111-4c4e-9b0a-0000000000ff"  # a fullUrl of no entry


def binary() -> dict:
    return {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}


def consent_policy() -> dict:
    return {"resourceType": "Basic", "code": {"text": "policy"}}


def stored(client, response, index: int) -> dict:
    location = response.json()["entry"][index]["response"]["location"]
    return client.get("/fhir/" + location.rsplit("/_history", 1)[0]).json()


def test_an_attachment_url_naming_a_binary_of_the_transaction_points_at_the_created_binary(client):
    document = {"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"contentType": "text/plain", "url": BINARY}}]}
    r = post_bundle(client, tx(post(document), post(binary(), BINARY)))
    assert r.status_code == 200, r.text
    assert stored(client, r, 0)["content"][0]["attachment"]["url"] == created(r, 1)
    assert created(r, 1).startswith("Binary/")


def test_uri_elements_are_replaced_wherever_they_sit_and_only_on_an_exact_match(client):
    provenance = {
        "resourceType": "Provenance", "recorded": "2025-03-03T10:00:00Z",
        "target": [{"reference": PATIENT}],
        "policy": [POLICY, PATIENT, ELSEWHERE, PATIENT + "/x", "http://example.org/?of=" + PATIENT],
        "agent": [{"who": {"reference": PATIENT}}],
        "entity": [{"role": "source", "what": {"reference": "#b"}}],
        "extension": [{"url": "http://example.org/a", "valueUri": PATIENT},
                      {"url": "http://example.org/b", "valueString": PATIENT},
                      {"url": "http://example.org/c", "valueCanonical": POLICY}],
        "contained": [{"resourceType": "Basic", "id": "b", "code": {"text": "x"},
                       "implicitRules": PATIENT}],
    }
    pat = patient(identifier=[{"system": "urn:ietf:rfc:3986", "value": PATIENT}])
    r = post_bundle(client, tx(post(provenance), post(pat, PATIENT), post(consent_policy(), POLICY)))
    assert r.status_code == 200, r.text
    pid, policy = created(r, 1), created(r, 2)
    out = stored(client, r, 0)
    assert out["target"][0]["reference"] == pid
    assert out["policy"] == [policy, pid, ELSEWHERE, PATIENT + "/x", "http://example.org/?of=" + PATIENT]
    assert out["agent"][0]["who"]["reference"] == pid
    assert [e.get("valueUri") or e.get("valueString") or e.get("valueCanonical") for e in out["extension"]] \
        == [pid, PATIENT, policy]
    assert out["contained"][0]["implicitRules"] == pid
    # Identifier.value is a string, not a link: an identifier that spells the fullUrl stays as it is
    assert stored(client, r, 1)["identifier"][0]["value"] == PATIENT


def test_narrative_links_are_replaced_but_not_text_or_other_attributes(client):
    div = (f'<div xmlns="http://www.w3.org/1999/xhtml"><p>See <a href="{PATIENT}" title="{PATIENT}">the '
           f"patient</a> ({PATIENT}), <a href='{ELSEWHERE}'>elsewhere</a>, "
           f"<span title='a>b href=\"{PATIENT}\"'>href=\"{PATIENT}\"</span>.</p><!-- <a href=\"{PATIENT}\"/> -->"
           f'<img src="{BINARY}" alt="scan"/></div>')
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "text": {"status": "generated", "div": div}, "subject": {"reference": PATIENT}}
    r = post_bundle(client, tx(post(observation), post(patient(), PATIENT), post(binary(), BINARY)))
    assert r.status_code == 200, r.text
    pid, bid = created(r, 1), created(r, 2)
    assert stored(client, r, 0)["text"]["div"] == div.replace(f'<a href="{PATIENT}"', f'<a href="{pid}"', 1) \
        .replace(f'<img src="{BINARY}"', f'<img src="{bid}"')


def test_a_resource_without_placeholder_links_is_stored_as_sent(client):
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><a href="http://example.org/">x</a></div>'
    document = {"resourceType": "DocumentReference", "status": "current", "text": {"status": "generated", "div": div},
                "content": [{"attachment": {"url": "http://example.org/doc.pdf"}}]}
    r = post_bundle(client, tx(post(document), post(patient(), PATIENT)))
    assert r.status_code == 200, r.text
    out = stored(client, r, 0)
    assert out["content"][0]["attachment"]["url"] == "http://example.org/doc.pdf" and out["text"]["div"] == div


DOC_PATIENT = "urn:uuid:5d0a1f0e-1111-4c4e-9b0a-0000000000d1"


def collection(*members: tuple[str, dict]) -> dict:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": url, "resource": resource} for url, resource in members]}


def test_a_stored_bundle_keeps_the_references_it_resolves_itself(client):
    """A Bundle that an entry stores resolves references to its own entries (bundle.html#references): they
    are no placeholders of the transaction and stay as written, even where the transaction has an entry
    of the same fullUrl. References to the transaction's other entries are replaced as anywhere else."""
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": DOC_PATIENT}, "performer": [{"reference": PATIENT}]}
    stored_bundle = collection((DOC_PATIENT, patient()), ("urn:uuid:5d0a1f0e-1111-4c4e-9b0a-0000000000d2", obs))
    r = post_bundle(client, tx(post(stored_bundle), post(patient(), PATIENT)))
    assert r.status_code == 200, r.text
    out = stored(client, r, 0)
    assert out["entry"][0]["fullUrl"] == DOC_PATIENT
    assert out["entry"][1]["resource"]["subject"]["reference"] == DOC_PATIENT
    assert out["entry"][1]["resource"]["performer"][0]["reference"] == created(r, 1)

    # an inner fullUrl that is also the transaction's: inside the stored Bundle, the inner entry wins
    del obs["performer"]
    shadowing = collection((PATIENT, patient()), ("urn:uuid:5d0a1f0e-1111-4c4e-9b0a-0000000000d3",
                                                  {**obs, "subject": {"reference": PATIENT}}))
    r = post_bundle(client, tx(post(shadowing), post(patient(), PATIENT)))
    assert r.status_code == 200, r.text
    out = stored(client, r, 0)
    assert [out["entry"][0]["fullUrl"], out["entry"][1]["resource"]["subject"]["reference"]] == [PATIENT, PATIENT]


def test_a_stored_bundle_reference_to_no_entry_at_all_still_fails_the_transaction(client):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": ELSEWHERE}}
    r = post_bundle(client, tx(post(patient()), post(collection((DOC_PATIENT, patient()), (BINARY, obs)))))
    assert r.status_code == 404, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.entry[1].resource.subject.reference"]
