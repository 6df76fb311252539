"""$import and $export with the async pattern; the Synthea 10-patient export round-trips."""
from __future__ import annotations

import json
import time

import pytest

from ipt_fhir.api.content_coding import COMPRESS_MIN_BYTES
from ipt_fhir.services import resources as rs

from tests.bulk.conftest import (ASYNC, LENIENT, NDJSON_FILES, export, final_status, ids_by_type, import_parameters,
                                 patient_parameters, poll, read_export, read_ndjson_gz)

FHIR_JSON = {"content-type": "application/fhir+json"}


def _import(client, paths) -> dict:
    r = client.post("/fhir/$import", content=json.dumps(import_parameters(paths)), headers=FHIR_JSON)
    assert r.status_code == 202, r.text
    return poll(client, r.headers["Content-Location"])


def _expected() -> dict[str, dict[str, dict]]:
    return {p.name.split(".")[0]: {r["id"]: r for r in read_ndjson_gz(p)} for p in NDJSON_FILES}


def _strip(resource: dict) -> dict:
    out = {k: v for k, v in resource.items() if k != "meta"}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


def _resolve_conditionals(value, identifiers):
    if isinstance(value, dict):
        return {k: (identifiers.get(v, v) if k == "reference" and isinstance(v, str) else
                    _resolve_conditionals(v, identifiers)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_conditionals(v, identifiers) for v in value]
    return value


def test_synthea_ndjson_imports_with_conditional_references_and_exports_back_equal(client, ndjson_inputs):
    result = _import(client, ndjson_inputs)
    expected = _expected()
    counts = {o["type"]: o["count"] for o in result["output"]}
    assert counts == {t: len(v) for t, v in expected.items()}
    assert result["error"] == []

    # conditional references were resolved against the imported files
    identifiers = {}
    for rtype, resources in expected.items():
        for rid, res in resources.items():
            for ident in res.get("identifier", []):
                identifiers[f"{rtype}?identifier={ident.get('system', '')}|{ident['value']}"] = f"{rtype}/{rid}"
    enc_id, enc = next(iter(expected["Encounter"].items()))
    stored = client.get(f"/fhir/Encounter/{enc_id}").json()
    ref = stored["participant"][0]["individual"]["reference"]
    assert ref.startswith("Practitioner/") and "?" not in ref
    assert client.get(f"/fhir/{ref}").status_code == 200
    assert client.get(f"/fhir/Encounter?practitioner={ref}&_summary=count").json()["total"] >= 1

    r = client.get("/fhir/$export", headers=ASYNC)
    assert r.status_code == 202, r.text
    manifest = poll(client, r.headers["Content-Location"])
    assert manifest["requiresAccessToken"] is False and "transactionTime" in manifest
    exported = {}
    gzipped = 0
    for item in manifest["output"]:
        f = client.get(item["url"].split("testserver", 1)[1], headers={"Accept-Encoding": "gzip"})
        assert f.status_code == 200 and f.headers["content-type"].startswith("application/fhir+ndjson")
        if len(f.content) >= COMPRESS_MIN_BYTES:  # files stream out gzipped (api/content_coding.py)
            assert f.headers["content-encoding"] == "gzip", item["type"]
            gzipped += 1
        exported[item["type"]] = {r["id"]: r for r in map(json.loads, f.text.splitlines())}
    assert gzipped
    ours = {rt for rt, _ in client.app.state.ipt_conformance.resources}  # the server's own, exported too
    assert set(exported) - ours == set(expected)
    for rtype, resources in expected.items():
        assert set(exported[rtype]) == set(resources), rtype
        for rid, res in resources.items():
            assert _strip(exported[rtype][rid]) == _resolve_conditionals(_strip(res), identifiers), (rtype, rid)


def test_a_second_import_of_the_same_files_changes_nothing(client, ndjson_inputs):
    _import(client, ndjson_inputs[:3])
    history_before = client.get("/fhir/_history?_summary=count").json()["total"]
    again = _import(client, ndjson_inputs[:3])
    assert all(o["unchanged"] == o["count"] and o["created"] == o["updated"] == 0 for o in again["output"])
    assert client.get("/fhir/_history?_summary=count").json()["total"] == history_before


def test_failed_lines_are_reported_with_file_and_line_and_the_rest_is_imported(client, bulk_dir):
    lines = [
        {"resourceType": "Patient", "id": "ok1"},
        {"resourceType": "Patient", "id": "bad", "gender": "sometimes"},
        {"resourceType": "Patient"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "Patient?identifier=urn:none|nobody"}},
        {"resourceType": "Patient", "id": "ok2"},
    ]
    path = bulk_dir / "mixed.ndjson"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    result = _import(client, [path])
    assert {o["type"]: o["created"] for o in result["output"]}.get("Patient") == 2
    assert result["error"][0]["count"] == 4
    errors = client.get(result["error"][0]["url"].split("testserver", 1)[1])
    assert errors.headers["content-type"].startswith("application/fhir+ndjson")
    outcomes = [json.loads(x) for x in errors.text.splitlines()]
    where = [(o["extension"][0]["extension"][0]["valueString"], o["extension"][0]["extension"][1]["valueInteger"])
             for o in outcomes]
    assert where == [("mixed.ndjson", 2), ("mixed.ndjson", 3), ("mixed.ndjson", 4), ("mixed.ndjson", 6)]
    assert all(o["resourceType"] == "OperationOutcome" for o in outcomes)
    assert client.get("/fhir/Patient/ok2").status_code == 200


def test_ndjson_sent_in_the_request_is_imported(client):
    body = "\n".join(json.dumps({"resourceType": "Patient", "id": f"u{i}"}) for i in range(5))
    r = client.post("/fhir/$import", content=body, headers={"content-type": "application/fhir+ndjson"})
    assert r.status_code == 202
    result = poll(client, r.headers["Content-Location"])
    assert result["output"] == [{"type": "Patient", "count": 5, "created": 5, "updated": 0, "unchanged": 0,
                                 "failed": 0}]


@pytest.mark.parametrize("headers, body, status, root", [
    ({"content-type": "application/fhir+ndjson", "content-encoding": "gzip"}, b"not gzip", 400, "Resource"),
    ({"content-type": "application/fhir+ndjson", "content-encoding": "br"}, b"{}", 415, "Resource"),
    ({"content-type": "text/csv"}, b"a,b", 415, "Parameters"),
    ({"content-type": "application/fhir+json"}, b"{", 400, "Parameters"),
])
def test_a_kick_off_body_refused_whole_names_what_it_should_have_been(client, headers, body, status, root):
    """NDJSON is resources, one per line (`Resource`); the other form of kick-off is a Parameters."""
    r = client.post("/fhir/$import", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert [i["expression"] for i in r.json()["issue"]] == [[root]]


def test_an_oversize_ndjson_upload_is_413_naming_resources(settings, database):
    from fastapi.testclient import TestClient

    from ipt_fhir.app import create_app

    body = "\n".join(json.dumps({"resourceType": "Patient", "id": f"big{i}"}) for i in range(50)).encode()
    settings.max_body_bytes = len(body) - 1
    with TestClient(create_app(settings, database), base_url="http://testserver") as small:
        r = small.post("/fhir/$import", content=body, headers={"content-type": "application/fhir+ndjson"})
        assert r.status_code == 413 and r.json()["issue"][0]["expression"] == ["Resource"]
        chunked = small.post("/fhir/$import", content=iter([body[:100], body[100:]]),
                             headers={"content-type": "application/fhir+ndjson"})
        assert chunked.status_code == 413 and chunked.json()["issue"][0]["expression"] == ["Resource"]


def test_every_line_error_names_an_element_or_the_resource_the_line_should_be(client):
    body = "\n".join(["not json", json.dumps({"resourceType": "Parameters"}), "[1]",
                      json.dumps({"resourceType": "Patient", "id": "x", "gender": "nope"})])
    r = client.post("/fhir/$import", content=body, headers={"content-type": "application/fhir+ndjson"})
    manifest = poll(client, r.headers["Content-Location"])
    errors = client.get(manifest["error"][0]["url"].split("testserver", 1)[1]).text.splitlines()
    issues = [i for line in errors for i in json.loads(line)["issue"] if i["severity"] == "error"]
    assert len(errors) == 4 and all(i.get("expression") for i in issues), issues
    assert ["Resource"] in [i["expression"] for i in issues] and ["Patient.gender"] in [i["expression"] for i in issues]


def test_an_upload_works_with_the_default_relative_bulk_directory_and_is_removed_when_done(
        database, database_url, tmp_path, monkeypatch):
    """IPT_FHIR_BULK_DIR defaults to ./ipt-fhir-bulk; an uploaded body is patient data kept only while
    its job needs it."""
    from fastapi.testclient import TestClient

    from ipt_fhir.app import create_app
    from ipt_fhir.settings import Settings

    monkeypatch.chdir(tmp_path)
    app = create_app(Settings(database_url=database_url), database)
    body = "\n".join(json.dumps({"resourceType": "Patient", "id": f"rel{i}"}) for i in range(3))
    with TestClient(app, base_url="http://testserver") as client:
        r = client.post("/fhir/$import", content=body, headers={"content-type": "application/fhir+ndjson"})
        assert r.status_code == 202, r.text
        assert poll(client, r.headers["Content-Location"])["output"][0]["created"] == 3
    assert list((tmp_path / "ipt-fhir-bulk" / "uploads").iterdir()) == []


def test_import_inputs_outside_the_bulk_directory_are_refused(client):
    r = client.post("/fhir/$import", content=json.dumps(import_parameters(["/etc/passwd"])), headers=FHIR_JSON)
    assert r.status_code == 400


def test_a_folder_or_another_servers_url_is_refused_at_kick_off(client, settings):
    from pathlib import Path

    folder = Path(settings.bulk_dir) / "a-folder"
    folder.mkdir(parents=True)
    r = client.post("/fhir/$import", content=json.dumps(import_parameters([str(folder)])), headers=FHIR_JSON)
    assert r.status_code == 400 and "folder" in r.text
    remote = import_parameters([])
    remote["parameter"].append({"name": "input", "part": [{"name": "url", "valueUrl": "https://example.org/p.ndjson"}]})
    r = client.post("/fhir/$import", content=json.dumps(remote), headers=FHIR_JSON)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["input.url"]


def test_an_import_of_a_truncated_gzip_file_fails_naming_it(client, settings):
    import gzip
    from pathlib import Path

    cut = Path(settings.bulk_dir) / "cut.ndjson.gz"
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(gzip.compress(b'{"resourceType": "Patient", "id": "cut1"}\n' * 200)[:-20])
    r = client.post("/fhir/$import", content=json.dumps(import_parameters([str(cut)])), headers=FHIR_JSON)
    assert r.status_code == 202, r.text
    status = final_status(client, r.headers["Content-Location"], 60)
    assert status.status_code == 500  # the job failed (Bulk Data: a failed job is a 5xx with an outcome)
    assert "cut.ndjson.gz cannot be read" in status.json()["issue"][0]["diagnostics"]


def test_patient_group_level_export_with_type_since_and_type_filter(client):
    for pid in ("a", "b"):
        client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
        for status in ("finished", "planned"):
            client.post("/fhir/Encounter", json={"resourceType": "Encounter", "status": status,
                                                 "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{pid}"}})
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "not in a compartment"})
    client.put("/fhir/Group/g", json={"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                                      "member": [{"entity": {"reference": "Patient/a"}}]})

    everything = export(client, "/fhir/Patient/$export")
    assert set(everything) == {"Patient", "Encounter", "Group"}  # Group.member puts a Group in the compartment
    assert len(everything["Encounter"]) == 4 and "Organization" not in everything
    group = export(client, "/fhir/Group/g/$export?_type=Encounter")
    assert set(group) == {"Encounter"} and {e["subject"]["reference"] for e in group["Encounter"]} == {"Patient/a"}
    filtered = export(client, "/fhir/$export?_type=Encounter&_typeFilter=Encounter%3Fstatus%3Dplanned")
    assert [e["status"] for e in filtered["Encounter"]] == ["planned", "planned"]
    future = export(client, "/fhir/$export?_since=2999-01-01T00:00:00Z")
    assert future == {}
    assert client.get("/fhir/Group/nope/$export", headers=ASYNC).status_code == 404
    assert client.get("/fhir/$export").status_code == 400  # no Prefer: respond-async
    # RFC 7240: preferences may come in several Prefer headers
    two_lines = client.get("/fhir/$export", headers=[("Prefer", "handling=lenient"), ("Prefer", "respond-async")])
    assert two_lines.status_code == 202, two_lines.text


def test_type_filters_apply_to_every_chunk_of_patients_and_export_a_resource_once(client):
    """A Patient-level export reads its patients' data 200 patients at a time: each _typeFilter must
    select in every chunk, and a resource two filters, or two chunks' patients, select is exported once."""
    entries = []
    for i in range(201):
        pid = f"p{i:03d}"
        entries.append({"resource": {"resourceType": "Patient", "id": pid},
                        "request": {"method": "PUT", "url": f"Patient/{pid}"}})
        for status in ("planned", "finished", "cancelled"):
            entries.append({"resource": {"resourceType": "Encounter", "id": f"{pid}-{status}", "status": status,
                                         "class": {"code": "AMB" if status != "finished" else "IMP"},
                                         "subject": {"reference": f"Patient/{pid}"}},
                            "request": {"method": "PUT", "url": f"Encounter/{pid}-{status}"}})
    # in the compartments of p000 and p200, patients of different chunks
    entries.append({"resource": {"resourceType": "Observation", "id": "shared", "status": "final",
                                 "code": {"text": "reported by one patient about another"},
                                 "subject": {"reference": "Patient/p000"},
                                 "performer": [{"reference": "Patient/p200"}]},
                    "request": {"method": "PUT", "url": "Observation/shared"}})
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text[:500]
    assert [e["id"] for e in export(client, "/fhir/Patient/$export?_type=Observation")["Observation"]] == ["shared"]

    # planned | finished by status; planned again and cancelled by class AMB
    exported = export(client, "/fhir/Patient/$export?_type=Encounter&_typeFilter="
                               "Encounter%3Fstatus%3Dplanned,Encounter%3Fstatus%3Dfinished,Encounter%3Fclass%3DAMB")
    ids = [e["id"] for e in exported["Encounter"]]
    assert sorted(ids) == sorted(f"p{i:03d}-{s}" for i in range(201) for s in ("planned", "finished", "cancelled"))
    only_planned = export(client, "/fhir/Patient/$export?_type=Encounter&_typeFilter=Encounter%3Fstatus%3Dplanned")
    assert sorted(e["id"] for e in only_planned["Encounter"]) == [f"p{i:03d}-planned" for i in range(201)]


@pytest.mark.parametrize("output_format", ["application%2Ffhir%2Bndjson", "application%2Fndjson", "ndjson"])
def test_the_ndjson_output_formats_are_accepted(group_of_two, output_format):
    """export.html `_outputFormat`: servers SHALL support ndjson, under any of its three names."""
    exported = export(group_of_two, f"/fhir/Patient/$export?_type=Patient&_outputFormat={output_format}")
    assert ids_by_type(exported) == {"Patient": {"a", "b", "c"}}


@pytest.mark.parametrize("query", ["", "?patient=a"])
def test_a_deleted_or_unknown_group_is_404_at_kick_off(group_of_two, query):
    assert group_of_two.get(f"/fhir/Group/nope/$export{query}", headers=ASYNC).status_code == 404
    assert group_of_two.delete("/fhir/Group/g").status_code in (200, 204)
    gone = group_of_two.get(f"/fhir/Group/g/$export{query}", headers=ASYNC)
    assert gone.status_code == 404 and "Group/g" in gone.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_group_export_with_patient_exports_only_the_named_members(group_of_two, method):
    """export.html `patient`: no resources of a patient outside the list. Member b is not named, so
    nothing of b's is exported."""
    if method == "GET":
        exported = export(group_of_two, "/fhir/Group/g/$export?patient=Patient/a")
    else:
        exported = export(group_of_two, "/fhir/Group/g/$export", patient_parameters("Patient/a"))
    # g itself is in a's compartment (Group.member)
    assert ids_by_type(exported) == {"Patient": {"a"}, "Encounter": {"enc-a"}, "Group": {"g"}}


@pytest.mark.parametrize("path, names, outside", [
    ("/fhir/Group/g/$export", ["Patient/a", "Patient/c"], "Patient/c: each must be a member of Group/g"),
    ("/fhir/Group/g/$export", ["Patient/nobody"], "Patient/nobody: each must be a member of Group/g"),
    ("/fhir/Patient/$export", ["Patient/a", "Patient/nobody"], "Patient/nobody: each must be on this server"),
    ("/fhir/Patient/$export", ["Patient/a", "Patient/b"], "Patient/b: each must be on this server"),  # deleted
    # every named patient refused: the lenient export holds nobody's data, not everybody's
    ("/fhir/Patient/$export", ["Patient/nobody"], "Patient/nobody: each must be on this server"),
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_patient_the_export_cannot_include_is_refused_at_kick_off_unless_lenient(group_of_two, path, names,
                                                                                   outside, method):
    """export.html `patient`: "If a client requests patients who are not present on the server (or in
    the case of a group level export, who are not members of the group), the server SHOULD return details
    via a FHIR OperationOutcome resource in an error response". Under Prefer: handling=lenient the others
    are exported."""
    c = group_of_two
    c.delete("/fhir/Patient/b")  # a deleted patient is not on the server; its Encounter remains

    def kick_off(headers: dict):
        if method == "GET":
            return c.get(f"{path}?patient={','.join(names)}", headers=headers)
        return c.post(path, json=patient_parameters(*names), headers=headers)

    r = kick_off(ASYNC)
    assert r.status_code == 400, r.text
    [issue] = r.json()["issue"]
    assert issue["expression"] == ["patient"] and outside in issue["diagnostics"]
    lenient = kick_off(LENIENT)
    assert lenient.status_code == 202, lenient.text
    exported = ids_by_type(read_export(c, lenient))
    assert exported.get("Patient", set()) == ({"a"} if "Patient/a" in names else set())
    # a's data, nothing of a patient the kick-off named but refused
    assert exported.get("Encounter", set()) == ({"enc-a"} if "Patient/a" in names else set())


@pytest.mark.parametrize("parameter, where", [
    ({"name": "patient", "valueReference": {"identifier": {"system": "urn:x", "value": "a"}}},
     "Parameters.parameter[0]"),
    ({"name": "patient", "valueReference": {"reference": "Observation/a"}}, "patient"),
    ({"name": "patient", "valueString": "Group/g"}, "patient"),
])
def test_a_patient_that_is_no_patient_reference_is_refused(group_of_two, parameter, where):
    """Not read as an empty value (which would select every patient) nor as a patient of the same id."""
    for prefer in ("respond-async", "respond-async, handling=lenient"):  # lenient handling does not excuse it
        r = group_of_two.post("/fhir/Patient/$export", headers={"Prefer": prefer},
                              json={"resourceType": "Parameters", "parameter": [parameter]})
        assert r.status_code == 400, r.text
        assert r.json()["issue"][0]["expression"] == [where]


def test_an_empty_patient_parameter_is_no_parameter(group_of_two):
    """search.html: a parameter without a value is ignored, at either level."""
    assert ids_by_type(export(group_of_two, "/fhir/Group/g/$export?_type=Patient&patient=")) == {"Patient": {"a", "b"}}
    assert ids_by_type(export(group_of_two, "/fhir/Patient/$export?_type=Patient&patient=")) == {"Patient": {"a", "b", "c"}}


def test_post_export_reads_its_parameters_and_refuses_malformed_ones_with_400(client):
    client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a"})
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "x"})
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"}]}
    r = client.post("/fhir/$export", json=body, headers=ASYNC)
    assert r.status_code == 202, r.text
    manifest = poll(client, r.headers["Content-Location"])
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    for parameter, where in [(["_type"], "Parameters.parameter[0]"), ("_type", "Parameters.parameter"),
                             ([{"name": "_type", "valueString": "Patient"}, 7], "Parameters.parameter[1]"),
                             ([{"name": "_type", "valueCoding": {"code": "Patient"}}], "Parameters.parameter[0]"),
                             # only `patient` is taken as a valueReference
                             ([{"name": "_type", "valueReference": {"reference": "Patient"}}], "Parameters.parameter[0]"),
                             ([{"name": "patient", "valueReference": {"reference": "Patient/a"}}], "patient")]:
        bad = client.post("/fhir/$export", json={"resourceType": "Parameters", "parameter": parameter}, headers=ASYNC)
        assert bad.status_code == 400, bad.text
        assert bad.json()["issue"][0]["expression"] == [where]


@pytest.mark.parametrize("query, where, lenient", [
    ("_typeFilter=Patient%3Fnope%3D1", "nope", 400),  # a bad _typeFilter fails the kick-off, not the job
    ("_elements=id", "_elements", 202),  # hints it would not honour: ignored when told to be lenient
    ("includeAssociatedData=LatestProvenanceResources", "includeAssociatedData", 202),
    ("patient=Patient/a", "patient", 400),  # belongs to Patient- and Group-level export
    ("_outputFormat=text%2Fcsv", "_outputFormat", 400),
    ("bogus=1", "bogus", 400),  # any other parameter, always
])
def test_export_refuses_at_kick_off_what_it_would_not_honour(client, query, where, lenient):
    """Bulk Data export: an unsupported parameter is an error; only the hints `_elements` and
    `includeAssociatedData` are ignored under Prefer: handling=lenient."""
    r = client.get(f"/fhir/$export?{query}", headers=ASYNC)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == [where]
    client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a", "gender": "female"})
    r = client.get(f"/fhir/$export?{query}", headers={"Prefer": "respond-async, handling=lenient"})
    assert r.status_code == lenient, r.text
    if lenient == 202:  # ignored: the export is what it would be without the hint, every element there
        assert read_export(client, r)["Patient"][0]["gender"] == "female"


def test_post_patient_export_takes_patients_as_references(group_of_two):
    """export.html: POST kick-off's `patient` parameters are valueReference (at Group level:
    test_group_export_with_patient_exports_only_the_named_members)."""
    body = patient_parameters("Patient/b")
    body["parameter"].append({"name": "_type", "valueString": "Patient"})
    assert ids_by_type(export(group_of_two, "/fhir/Patient/$export", body)) == {"Patient": {"b"}}


def test_post_export_with_a_form_body_reads_it_as_the_query(group_of_two):
    """As every operation's POST here (search_routes.operation_params): a form-encoded body is read as
    the query string would be."""
    client = group_of_two
    r = client.post("/fhir/Patient/$export", content="_type=Patient&patient=Patient/b",
                    headers={**ASYNC, "Content-Type": "application/x-www-form-urlencoded"})
    assert ids_by_type(read_export(client, r)) == {"Patient": {"b"}}


def test_delete_cancels_an_export_and_its_status_is_then_gone(client):
    client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a"})
    r = client.get("/fhir/$export", headers=ASYNC)
    location = r.headers["Content-Location"].split("/fhir", 1)[1]
    poll(client, r.headers["Content-Location"])
    assert client.delete("/fhir" + location).status_code == 202
    assert client.get("/fhir" + location).status_code == 404


def test_a_job_status_is_scoped_to_its_kind(database, tmp_path):
    """An $import status URL never shows an $export job, nor the reverse."""
    from ipt_fhir.services.bulk_export import ExportJobs
    from ipt_fhir.services.bulk_import import ImportJobs
    from ipt_fhir.services.resources import now_utc
    from ipt_fhir.store import bulk

    with database.write() as conn:
        bulk.create_job(conn, "imp1", "import", "{}", now_utc())
        bulk.create_job(conn, "exp1", "export", "{}", now_utc())
    imports, exports = ImportJobs(database, tmp_path), ExportJobs(database, tmp_path)
    assert imports.status("imp1")["kind"] == "import" and exports.status("exp1")["kind"] == "export"
    assert imports.status("exp1") is None and exports.status("imp1") is None


def test_server_shutdown_stops_jobs_an_import_resumes_and_an_export_reports_failure(database, tmp_path):
    """On shutdown (lifespan), jobs stop at their next check so nothing keeps using the closed database."""
    from ipt_fhir.services.bulk_export import ExportJobs, ExportRequest
    from ipt_fhir.services.bulk_import import ImportJobs

    (tmp_path / "p.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "stop1"}) + "\n")
    imports, exports = ImportJobs(database, tmp_path), ExportJobs(database, tmp_path)
    imports.request_stop()  # a job kicked off now meets the stop at its first check
    exports.request_stop()
    imp = imports.kick_off([str(tmp_path / "p.ndjson")], base_url="")
    exp = exports.kick_off(ExportRequest("system", types=None, since=None, type_filters={}), base_url="",
                           request_url="x")
    imports.wait(imp, 30)
    exports.wait(exp, 30)
    assert imports.status(imp)["status"] == "interrupted"  # to be resumed: imports are idempotent
    from ipt_fhir.api.bulk_routes import _poll
    assert _poll(imports.status(imp), "import").status_code == 202  # to its client: still in progress
    failed = exports.status(exp)
    assert failed["status"] == "failed" and "stopped" in json.loads(failed["result"])["error"]
    assert not (tmp_path / "export" / exp).exists()

    resumed = ImportJobs(database, tmp_path)  # the next server start, seconds later
    assert resumed.resume_unfinished() == [imp]
    assert ImportJobs(database, tmp_path).resume_unfinished() == []  # claimed: a second server leaves it
    resumed.wait(imp, 30)
    assert resumed.status(imp)["status"] == "completed"


def test_a_job_a_crash_left_running_is_resumed_once_it_turns_stale_even_after_a_quick_restart(database, tmp_path):
    """A supervisor restarts a killed server within seconds: the job it left `running` has moved recently,
    so it may be another live server's; once it has not moved for stale_seconds, it is resumed."""
    import threading

    from ipt_fhir.services.bulk_import import ImportJobs
    from ipt_fhir.store import bulk

    (tmp_path / "p.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "crashed1"}) + "\n")
    crashed = ImportJobs(database, tmp_path)
    crashed.request_stop()
    job = crashed.kick_off([str(tmp_path / "p.ndjson")], base_url="")
    crashed.wait(job, 30)
    with database.write() as conn:  # as a kill -9 leaves it: running, and it moved a moment ago
        bulk.update_job(conn, job, rs.now_utc(), status="running")

    restarted = ImportJobs(database, tmp_path)
    assert restarted.resume_unfinished(stale_seconds=2) == []  # fresh: perhaps another server's
    settle = threading.Thread(target=restarted.resume_until_settled, kwargs={"stale_seconds": 2})
    settle.start()
    settle.join(30)
    assert not settle.is_alive()
    restarted.wait(job, 30)
    assert restarted.status(job)["status"] == "completed"


def test_stop_waits_for_running_jobs_and_names_those_that_outlast_it(database, tmp_path):
    import threading

    from ipt_fhir.services.bulk_jobs import JobRunner

    release = threading.Event()

    class Polite(JobRunner):
        kind = "import"

        def _run(self, job_id: str) -> None:
            while not self.cancelled(job_id):
                release.wait(0.01)

    class Stubborn(Polite):
        def _run(self, job_id: str) -> None:
            release.wait(30)

    polite, stubborn = Polite(database), Stubborn(database)
    polite.start("a")
    stubborn.start("b")
    polite.request_stop()
    stubborn.request_stop()
    assert polite.wait_stopped(time.monotonic() + 5) == []
    assert stubborn.wait_stopped(time.monotonic() + 0.05) == ["b"]
    release.set()
    stubborn.wait("b", 5)


def test_cancelling_an_interrupted_upload_import_cancels_it_and_deletes_the_upload(database, tmp_path):
    """An import interrupted by a shutdown can still be cancelled by its client (DELETE on its status
    URL), and the uploaded body, patient data, goes with it."""
    from ipt_fhir.services.bulk_import import ImportJobs

    imports = ImportJobs(database, tmp_path)
    imports.request_stop()  # the upload's job meets the stop at its first check: interrupted
    job = imports.kick_off([], base_url="", upload=json.dumps({"resourceType": "Patient", "id": "c1"}).encode())
    imports.wait(job, 30)
    assert imports.status(job)["status"] == "interrupted"
    assert list((tmp_path / "uploads").iterdir())  # kept while the job may resume

    assert ImportJobs(database, tmp_path).cancel(job)
    assert imports.status(job)["status"] == "cancelled"
    assert list((tmp_path / "uploads").iterdir()) == []


def test_an_export_started_during_a_write_holds_it_or_names_a_time_before_it(client, database, app):
    """The manifest holds what changed "up to and including" its transactionTime (Bulk Data manifest):
    a version stamped before that time but committed after the export read would be in neither this export
    nor the next one `_since` it. On SQLite the export waits for the writer either way; PostgreSQL, where
    writers run side by side, is where this fails without bulk_export._transaction_time."""
    import threading

    stamped: dict = {}

    def slow_write() -> None:
        with database.write() as conn:
            result = app.state.resource_service.create_in(conn, "Patient", {"resourceType": "Patient"}, [])
            stamped.update(id=result.version.id, at=result.version.last_updated)
            time.sleep(1.5)  # stamped, not yet committed

    writer = threading.Thread(target=slow_write)
    writer.start()
    while "at" not in stamped:
        time.sleep(0.01)
    kick_off = client.get("/fhir/Patient/$export", headers=ASYNC)
    assert kick_off.status_code == 202, kick_off.text
    manifest = poll(client, kick_off.headers["Content-Location"])
    writer.join()
    exported = {r["id"] for o in manifest["output"] if o["type"] == "Patient"
                for r in map(json.loads, client.get(o["url"].split("testserver", 1)[1]).text.splitlines())}
    assert stamped["id"] in exported or manifest["transactionTime"] < rs.format_instant(stamped["at"])


@pytest.mark.parametrize("query, accept", [("", "application/fhir+xml"), ("?_format=xml", "application/fhir+json")])
def test_an_export_asked_for_in_xml_is_406_and_starts_no_job(client, query, accept):
    r = client.get(f"/fhir/$export{query}", headers={**ASYNC, "Accept": accept})
    assert r.status_code == 406, r.text
    assert "content-location" not in r.headers


def test_an_import_job_counts_the_lines_it_found_unchanged(database, tmp_path):
    """A rerun writes nothing: its progress says the lines were unchanged, not just `written 0`."""
    from ipt_fhir.services.bulk_import import ImportJobs

    lines = tmp_path / "same.ndjson"
    lines.write_text("".join(json.dumps({"resourceType": "Patient", "id": f"same-{i}"}) + "\n" for i in range(3)))
    jobs = ImportJobs(database, tmp_path)
    for expected_unchanged in (0, 3):
        job = jobs.kick_off([str(lines)], base_url="")
        jobs.wait(job, 60)
        progress = json.loads(jobs.status(job)["progress"])
        assert (progress["written"], progress["unchanged"]) == (3 - expected_unchanged, expected_unchanged)


def test_a_failed_export_tells_the_client_no_internals(client, monkeypatch):
    """A database error's text holds the SQL and the values bound to it; the status poll used to show it."""
    import sqlalchemy.exc

    from ipt_fhir.services import bulk_export

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise sqlalchemy.exc.OperationalError("SELECT secret FROM resource WHERE id = ?", ("p1",), Exception("boom"))

    monkeypatch.setattr(bulk_export.Exporter, "run", fail)
    r = client.get("/fhir/$export", headers=ASYNC)
    assert r.status_code == 202, r.text
    status = final_status(client, r.headers["Content-Location"], 60)
    assert status.status_code == 500 and status.json()["resourceType"] == "OperationOutcome"
    text = status.json()["issue"][0]["diagnostics"]
    assert "OperationalError" in text and "SELECT" not in text and "p1" not in text


def test_file_names_too_long_for_the_file_system_are_not_found_or_refused(client, settings):
    """A name over 255 bytes makes the file system raise instead of answering no (a 500 before)."""
    from pathlib import Path

    (Path(settings.bulk_dir) / "export").mkdir(parents=True, exist_ok=True)  # as after a first job: the
    long = "a" * 300  # file system then reaches the long name (a missing folder before it is only ENOENT)
    assert client.get(f"/fhir/$export-file/{long}/x.ndjson").status_code == 404
    assert client.get(f"/fhir/$export-file/abc/{long}.ndjson").status_code == 404
    assert client.get(f"/fhir/$import-file/{long}/errors.ndjson").status_code == 404
    r = client.post("/fhir/$import", content=json.dumps(import_parameters([f"{long}.ndjson"])), headers=FHIR_JSON)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["input.url"], r.text
