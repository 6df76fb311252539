"""The OpenAPI document, generated from the live app's routes and the FHIR registries.

FastAPI sees the generic FHIR routes (`/fhir/{resource_type}/{resource_id}`) with untyped bodies; this
module turns them into a developer's API: each generic route is also written out per documented resource
type (CarePlan, Goal, Encounter, …) with that type's JSON Schema (vendored from the official R4 JSON
Schema), realistic IPT examples, every search parameter of the type as a query parameter (from the
same registry that drives search and the CapabilityStatement), the FHIR headers and the
OperationOutcome errors. Routes added later (operations, bulk data, …) appear without changes here.

    ipt-fhir openapi --output openapi/openapi.json      # or: python -m ipt_fhir.api.openapi
"""
from __future__ import annotations

import copy
import gzip
import json
import re
import sys
import warnings
from functools import lru_cache
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ipt_fhir.fhir.parameters import parameter_value
from ipt_fhir.observability import interaction_of, operation_name

from . import openapi_examples as ex
from . import openapi_walkthrough as walk

FHIR_JSON = "application/fhir+json"
EXPORT_COMMAND = "ipt-fhir openapi --output openapi/openapi.json"

# Written out per type, in this order (Bundle, OperationOutcome and Parameters appear as bodies).
DOCUMENTED_TYPES = ("CarePlan", "Goal", "Encounter", "Patient", "Condition", "Observation", "ServiceRequest",
                    "Procedure", "PlanDefinition", "Practitioner")
BODY_TYPES = ("Bundle", "OperationOutcome", "Parameters")
PATIENT_COMPARTMENT_TYPES = ("CarePlan", "Goal", "Encounter", "Condition", "Observation", "ServiceRequest",
                             "Procedure")

TYPE_NOTES = {
    "CarePlan": "The IPT treatment plan (profile ipt-careplan): protocol, phases, problem area, sessions.",
    "Goal": "A treatment goal of an IPT plan (profile ipt-goal), e.g. a PHQ-9 target or an interpersonal goal.",
    "Encounter": "A therapy session (profile ipt-session-encounter): number, phase, attendance, techniques.",
    "Patient": "The person in treatment.",
    "Condition": "Diagnosis (e.g. major depressive disorder) or IPT problem area (profile ipt-problem-area-condition).",
    "Observation": "Symptom scores such as the PHQ-9 total (profile ipt-symptom-score).",
    "ServiceRequest": "The referral/order for an IPT course (profile ipt-course-servicerequest).",
    "Procedure": "A psychotherapy procedure performed, e.g. for billing (CPT 90834/90837).",
    "PlanDefinition": "An IPT protocol (standard individual, brief, WHO group, maintenance, …); see $apply.",
    "Practitioner": "The therapist.",
}

RESULT_PARAMETERS = (
    ("_count", "integer", "Page size (default and cap are server settings)"),
    ("_sort", "string", "Comma-separated sort parameters, `-` for descending, e.g. `-_lastUpdated`"),
    ("_summary", "string", "`true`, `text`, `data`, `count` or `false`"),
    ("_elements", "string", "Comma-separated top-level elements to return"),
    ("_total", "string", "`none`, `estimate` or `accurate`"),
    ("_format", "string", "`json` or `application/fhir+json` (XML is not served)"),
    ("_pretty", "boolean", "Indent the JSON"),
)

RESULT_NAMES = frozenset(name for name, _, _ in RESULT_PARAMETERS)

HEADER_DOCS = {
    "If-Match": "Version-aware update, patch or delete: `W/\"<versionId>\"`, a list of them (any may match), "
                "or `*`. Anything but the current version (or no current version at all) gets 412 Precondition "
                "Failed.",
    "If-None-Exist": "Conditional create: search criteria (e.g. `identifier=http://hospital.example/mrn|123`). "
                     "If one resource matches, it is returned (200) and nothing is created.",
    "If-None-Match": "Read: `W/\"<versionId>\"`: 304 Not Modified when the resource is still at that version. "
                     "Update: `*` writes only if the resource does not exist yet (412 otherwise).",
    "If-Modified-Since": "Read: an HTTP date; 304 Not Modified when the resource has not changed since.",
    "Prefer": "`return=minimal`, `return=representation` (default) or `return=OperationOutcome`; on search "
              "`handling=strict` rejects unknown parameters.",
}

VERSION_HEADERS = {
    "ETag": {"description": "The version: W/\"<versionId>\"", "schema": {"type": "string"}},
    "Last-Modified": {"description": "meta.lastUpdated as an HTTP date", "schema": {"type": "string"}},
}
LOCATION_HEADER = {"Location": {"description": "[base]/[type]/[id]/_history/[versionId]",
                                "schema": {"type": "string"}}}

# Instance operations that answer 410 once their resource is deleted, as a read of it does.
_ON_A_DELETABLE_INSTANCE = frozenset({"$ipt-progress", "$meta-add", "$meta-delete"})
# Operation names documented with specific bodies; any other operation gets Parameters in, Resource out.
OPERATION_BODIES: dict[str, tuple[str | None, str, str]] = {
    # name: (input schema, output schema, description)
    "$apply": ("Parameters", "Bundle",
               "Apply an IPT protocol (PlanDefinition) to a patient: a CarePlan with its goals, course "
               "ServiceRequest and scheduled session Encounters. Inputs: subject (required), practitioner, "
               "start (date, required), sessionCount, weekday, store (persist in one transaction)."),
    "$ipt-progress": ("Parameters", "Parameters",
                      "Progress of an IPT plan from the read model: phase, sessions held/planned, next session, "
                      "baseline and latest PHQ-9, response and remission."),
    "$everything": ("Parameters", "Bundle", "Everything in the Patient compartment (start, end, _since, _type, _count); "
                    "start and end are care dates, inclusive: they filter the types the clinical-date search "
                    "parameter covers (Encounter, Observation, CarePlan, Procedure, ...) and those with a date of "
                    "the care they order, bill or record (MedicationRequest, Claim, Appointment, ...), not the others; "
                    "what a member in range refers to is returned whatever its date. "
                    "With POST, the same parameters in a Parameters body."),
    "$export": (None, "OperationOutcome", "Bulk Data export (async: 202 and Content-Location to poll)."),
    "$import": ("Parameters", "OperationOutcome", "Bulk load NDJSON (async: 202 and Content-Location to poll)."),
    "$validate": ("Parameters", "OperationOutcome", "Validate a resource against R4, its claimed profiles and the "
                  "IPT rules without storing it; the answer is an OperationOutcome."),
}


# FHIR primitive types of operation parameters -> JSON Schema of the query string value
QUERY_SCHEMAS = {"string": {"type": "string"}, "code": {"type": "string"}, "uri": {"type": "string"},
                 "canonical": {"type": "string"}, "date": {"type": "string", "format": "date"},
                 "dateTime": {"type": "string"}, "boolean": {"type": "boolean"}, "integer": {"type": "integer"},
                 "positiveInt": {"type": "integer", "minimum": 1}, "unsignedInt": {"type": "integer", "minimum": 0},
                 "decimal": {"type": "number"}}
# Inputs an operation's definition declares but its GET refuses (they change the server: POST only).
POST_ONLY_INPUTS = {"$apply": {"store"}}


def _operation_query_parameters(name: str, resource_type: str | None) -> list[dict]:
    """GET [base]/[type]/[id]/$op takes the primitive inputs of the operation's OperationDefinition as
    query parameters (operations.html): those of the definitions this server publishes, documented."""
    from ipt_fhir.domain.conformance_loader import conformance_by_type

    for definition in conformance_by_type()["OperationDefinition"]:
        if f"${definition['code']}" != name or resource_type not in definition.get("resource", []):
            continue
        examples = _query_examples(name)
        params = []
        for p in definition.get("parameter", []):
            if p["use"] != "in" or p.get("type") not in QUERY_SCHEMAS or p["name"] in POST_ONLY_INPUTS.get(name, ()):
                continue
            param = {"name": p["name"], "in": "query", "required": p["min"] >= 1,
                     "description": f"**{p['type']}** — {p.get('documentation', '')}. Definition: {definition['url']}",
                     "schema": dict(QUERY_SCHEMAS[p["type"]])}
            if p["name"] in examples:
                param["example"] = examples[p["name"]]
            params.append(param)
        return params
    return []


# The operations whose examples are walk-through steps: the step, and the POST body example with what it
# says (summary, description) if the operation takes one; its GET form takes the same values as parameters.
OPERATION_STEPS: dict[str, tuple[int, Any]] = {
    "$apply": (walk.APPLY_STEP, lambda: (ex.apply_parameters_example(), walk.step_example(
        walk.APPLY_STEP, "plan a standard IPT course for the patient and store it",
        f"The course of {walk.APPLIED_PROTOCOL} for Patient/{walk.FIXED_IDS['Patient']} (step 1) with "
        f"Practitioner/{walk.FIXED_IDS['Practitioner']} (step 2), stored in one transaction."))),
    "$ipt-progress": (walk.PROGRESS_STEP, None),
}


def _post_example(name: str) -> tuple[dict, dict] | None:
    make = OPERATION_STEPS.get(name, (None, None))[1]
    return make() if make else None


def _query_examples(name: str) -> dict[str, Any]:
    """The values of the operation's POST example, for its GET form (the same walk-through step)."""
    example = _post_example(name)
    return {p["name"]: parameter_value(p) for p in example[0]["parameter"]} if example else {}


@lru_cache(maxsize=1)
def fhir_schemas() -> dict[str, Any]:
    path = resources.files("ipt_fhir.fhir").joinpath("definitions/openapi-schemas.json.gz")
    return json.loads(gzip.decompress(path.read_bytes()))


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


# Examples are shared through components/examples (a stored CarePlan appears in a dozen operations).
_examples: dict[str, dict] = {}


def _example_ref(label: str, value: Any, step: dict | None = None) -> dict:
    """A shared example; `step`: its summary, description and place in the walk-through (request bodies)."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
    candidate, n = key, 1
    while candidate in _examples and _examples[candidate]["value"] != value:
        n += 1
        candidate = f"{key}-{n}"
    _examples[candidate] = {"summary": label, **(step or {}), "value": value}
    return {"$ref": f"#/components/examples/{candidate}"}


def _examples_of(examples: dict[str, Any]) -> dict:
    """name -> value, or (value, walk-through step) -> refs to shared examples."""
    refs = {}
    for name, value in examples.items():
        value, step = value if isinstance(value, tuple) else (value, None)
        if value is not None:
            refs[name] = _example_ref(name, value, step)
    return refs


def _fhir_content(schema_name: str, examples: dict[str, Any] | None = None) -> dict:
    media: dict[str, Any] = {"schema": _ref(schema_name)}
    refs = _examples_of(examples or {})
    if refs:
        media["examples"] = refs
    return {FHIR_JSON: media}


def _outcome(description: str, status: int) -> dict:
    return {"description": description, "content": _fhir_content("OperationOutcome",
                                                                  {f"OperationOutcome {status}": ex.outcome_example(status)})}


ERRORS = {
    "400": "Malformed request or invalid resource structure",
    "404": "Unknown resource type or id",
    "409": "Version conflict with a concurrent write",
    "410": "The resource was deleted",
    "412": "If-Match does not match the current version, or conditional criteria match several resources",
    "422": "The resource breaks a profile or an IPT business rule",
}


_responses: dict[str, dict] = {}
_parameters: dict[str, dict] = {}


def _errors(*codes: str) -> dict:
    out = {}
    for code in codes:
        _responses.setdefault(f"Error{code}", _outcome(ERRORS[code], int(code)))
        out[code] = {"$ref": f"#/components/responses/Error{code}"}
    return out


def _shared_param(key: str, param: dict) -> dict:
    """Parameters used by many operations live in components/parameters."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "-", key)
    _parameters.setdefault(key, param)
    return {"$ref": f"#/components/parameters/{key}"}


def _search_parameters(resource_type: str | None) -> list[dict]:
    from ipt_fhir.services.search import search_include_names, search_params_for_capability

    params: list[dict] = []
    if resource_type is not None:
        for p in search_params_for_capability(resource_type):
            params.append(_shared_param(f"{resource_type}.{p['name']}", {
                "name": p["name"], "in": "query", "required": False,
                "description": f"**{p['type']}** — {p['documentation']}. Definition: {p['definition']}",
                "schema": {"type": "string"}}))
        includes, revincludes = search_include_names(resource_type)
        if includes:
            params.append(_shared_param(f"{resource_type}._include", {
                "name": "_include", "in": "query", "required": False,
                "description": "Include referenced resources: " + ", ".join(f"`{i}`" for i in includes),
                "schema": {"type": "string"}}))
        if revincludes:
            params.append(_shared_param(f"{resource_type}._revinclude", {
                "name": "_revinclude", "in": "query", "required": False,
                "description": "Include resources that reference the matches: "
                               + ", ".join(f"`{i}`" for i in revincludes[:60]),
                "schema": {"type": "string"}}))
    else:  # a search across types: which ones, and the parameters every type has (those of Resource)
        params.append(_shared_param("_type", {
            "name": "_type", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "Comma-separated resource types to search (search.html#_type); other parameters "
                           "must be common to all of them"}))
        for p in search_params_for_capability("Patient"):
            if p["name"].startswith("_"):
                params.append(_shared_param(f"Resource.{p['name']}", {
                    "name": p["name"], "in": "query", "required": False,
                    "description": f"**{p['type']}** — {p['documentation']}. Definition: {p['definition']}",
                    "schema": {"type": "string"}}))
    for name, typ, doc in RESULT_PARAMETERS:
        params.append(_shared_param(name, {"name": name, "in": "query", "required": False, "description": doc,
                                           "schema": {"type": typ}}))
    return params


def _header(name: str) -> dict:
    return _shared_param(name, {"name": name, "in": "header", "required": False, "description": HEADER_DOCS[name],
                                "schema": {"type": "string"}})


def _resolve_param(param: dict) -> dict:
    ref = param.get("$ref")
    return _parameters[ref.rsplit("/", 1)[1]] if ref else param


def _param_key(param: dict) -> tuple[str, str]:
    resolved = _resolve_param(param)
    return resolved["name"], resolved["in"]


def _path_param_docs(param: dict, resource_type: str | None) -> dict:
    name = param.get("name")
    docs = {
        "resource_id": f"Logical id of the {resource_type or 'resource'}",
        "version_id": "Version id (1, 2, 3, …)",
        "patient_id": "Logical id of the Patient",
        "resource_type": "Any FHIR R4 resource type, e.g. CarePlan",
        "plan_id": "Logical id of an IPT protocol (PlanDefinition) this server publishes",
        "careplan_id": "Logical id of an IPT CarePlan",
    }
    if name in docs:
        param = {**param, "description": docs[name]}
        if name in ("resource_id", "patient_id"):
            param["schema"] = {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}
    # "Try it out" starts from the walk-through's resources (openapi_walkthrough), which exist once its
    # PUT examples ran; a generic path shows the plan's.
    example = {"resource_id": walk.FIXED_IDS.get(resource_type or "CarePlan", walk.APPLIED_PROTOCOL
                                                 if resource_type == "PlanDefinition" else None),
               "resource_type": "CarePlan" if resource_type is None else None,
               "patient_id": walk.FIXED_IDS["Patient"], "plan_id": walk.APPLIED_PROTOCOL,
               "careplan_id": walk.FIXED_IDS["CarePlan"], "version_id": "1"}.get(name)
    if example is not None:
        param = {**param, "example": example}
    return param


def _criteria_parameters(resource_type: str | None, every_match: bool = False) -> list[dict]:
    """The search criteria of a conditional update, patch or delete: the type's search parameters, `_id`
    with the walk-through's resource as its example (the plan's on the generic path, whose type's is CarePlan).
    `every_match`: a conditional delete, which acts on all matches (CapabilityStatement conditionalDelete
    `multiple`); an update or patch needs exactly one."""
    criteria = [p for p in _search_parameters(resource_type) if resource_type is not None
                and _resolve_param(p)["name"] not in {"_id", "_include", "_revinclude", *RESULT_NAMES}]
    own_id = {"name": "_id", "in": "query", "required": False,
              "description": ("The criteria select the resources to delete (any search parameter of the type): "
                              "every match is deleted, none is a 204" if every_match else
                              "The criteria select the resource (any search parameter of the type): one match is "
                              "changed, none creates (update) or is a 404 (patch), more than one is a 412"),
              "schema": {"type": "string"}}
    if (resource_type or "CarePlan") in walk.FIXED_IDS:
        own_id["example"] = walk.FIXED_IDS[resource_type or "CarePlan"]
    return [own_id, *criteria]


def _decorate(op: dict, method: str, path: str, resource_type: str | None, route_responses: set[str]) -> dict:
    """Add FHIR request/response documentation to one operation of the generated document."""
    interaction = interaction_of(method, path)
    method = method.upper()
    schema = resource_type if resource_type in DOCUMENTED_TYPES else "Resource"
    rt = resource_type
    op = copy.deepcopy(op)
    params = [_path_param_docs(p, rt) for p in op.get("parameters", []) if p.get("in") == "path"]
    params += [p for p in op.get("parameters", []) if p.get("in") != "path"]
    extra_params: list[dict] = []
    responses: dict[str, Any] = {}
    body: dict | None = None
    stored = ex.stored_examples().get(rt or "")

    if interaction == "read":
        extra_params = [_header("If-None-Match"), _header("If-Modified-Since")]
        responses = {"200": {"description": f"The current version of the {rt or 'resource'}",
                             "headers": VERSION_HEADERS, "content": _fhir_content(schema, {f"{rt} (stored)": stored})},
                     "304": {"description": "Not modified (If-None-Match, If-Modified-Since)"}, **_errors("404", "410")}
    elif interaction == "vread":
        extra_params = [_header("If-None-Match"), _header("If-Modified-Since")]
        responses = {"200": {"description": "That version", "headers": VERSION_HEADERS,
                             "content": _fhir_content(schema, {f"{rt} (stored)": stored})},
                     "304": {"description": "Not modified (If-None-Match, If-Modified-Since)"}, **_errors("404", "410")}
    elif interaction in ("search-type", "search-system", "search-compartment"):
        # the system search and the compartment's across its types (Patient/{id}/*, Patient/{id}/_search)
        across_types = interaction == "search-system" or path.endswith(("{patient_id}/*", "{patient_id}/_search"))
        searched = None if across_types else rt
        extra_params = [_header("Prefer")] + ([] if method == "POST" else _search_parameters(searched))
        if method == "POST" and path.endswith("_search"):
            body = {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {p["name"]: {"type": "string", "description": p["description"]}
                                                 for p in map(_resolve_param, _search_parameters(searched))}}}}}
        responses = {"200": {"description": "A searchset Bundle (paged; follow link `next`)",
                             "content": _fhir_content("Bundle", {f"searchset of {rt or 'CarePlan'}": ex.searchset_example(rt or "CarePlan")})},
                     **_errors("400")}
    elif interaction.startswith("history"):
        extra_params = [{"name": n, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
                        for n, d in (("_since", "Only versions after this instant"),
                                     ("_at", "Versions current at this instant"), ("_count", "Page size"))]
        responses = {"200": {"description": "A history Bundle, newest first",
                             "content": _fhir_content("Bundle", {f"history of {rt or 'CarePlan'}": ex.history_example(rt or "CarePlan")})},
                     **_errors("400", "404")}
    elif interaction == "create":
        extra_params = [_header("If-None-Exist"), _header("Prefer")]
        made = ex.create_example(rt or "")
        example = (made[0], walk.create_step(rt, made[1])) if made else None
        body = {"required": True, "content": _fhir_content(schema, {f"{rt} (create)": example})}
        responses = {"201": {"description": "Created", "headers": {**VERSION_HEADERS, **LOCATION_HEADER},
                             "content": _fhir_content(schema, {f"{rt} (stored)": stored})},
                     "200": {"description": "Conditional create: one resource matched If-None-Exist; nothing created",
                             "headers": VERSION_HEADERS, "content": _fhir_content(schema)},
                     **_errors("400", "412", "422")}
    elif interaction == "update":
        extra_params = [_header("If-Match"), _header("If-None-Match"), _header("Prefer")]
        if "{resource_id}" not in path:
            extra_params = _criteria_parameters(rt) + extra_params
        example = (ex.update_example(rt), walk.update_step(rt)) if rt in walk.FIXED_IDS else None
        body = {"required": True, "content": _fhir_content(schema, {f"{rt} (update)": example})}
        responses = {"200": {"description": "Updated (a new version)", "headers": {**VERSION_HEADERS, **LOCATION_HEADER},
                             "content": _fhir_content(schema, {f"{rt} (stored)": stored})},
                     "201": {"description": "Created with the id of the URL", "headers": {**VERSION_HEADERS, **LOCATION_HEADER},
                             "content": _fhir_content(schema)},
                     **_errors("400", "409", "412", "422")}
    elif interaction == "patch":
        extra_params = [_header("If-Match"), _header("Prefer")]
        if "{resource_id}" not in path:
            extra_params = _criteria_parameters(rt) + extra_params
        patched = ex.stored_examples().get(rt or "CarePlan")  # none for PlanDefinition: ours are read-only
        json_patch = {"application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}}}
        fhir_patch = _fhir_content("Parameters")
        if patched is not None:
            json_patch["application/json-patch+json"]["examples"] = _examples_of({
                f"JSON Patch of {patched['resourceType']}": (walk.json_patch(patched),
                                                             walk.patch_step(patched["resourceType"], "JSON Patch"))})
            fhir_patch = _fhir_content("Parameters", {
                f"FHIRPath Patch of {patched['resourceType']}": (
                    walk.fhirpath_patch(patched), walk.patch_step(patched["resourceType"], "FHIRPath Patch"))})
        body = {"required": True, "content": {**json_patch, **fhir_patch}}
        responses = {"200": {"description": "Patched (a new version)", "headers": VERSION_HEADERS,
                             "content": _fhir_content(schema)}, **_errors("400", "404", "409", "412", "422")}
    elif interaction == "delete":
        extra_params = [_header("If-Match"), _header("Prefer")]
        if "{resource_id}" not in path:
            extra_params = _criteria_parameters(rt, every_match=True) + extra_params
        responses = {"204": {"description": "Deleted (or there was nothing to delete)"},
                     "200": {"description": "Deleted, with Prefer: return=OperationOutcome",
                             "content": _fhir_content("OperationOutcome")},
                     **_errors("409", "412")}
    elif interaction == "transaction":
        extra_params = [_header("Prefer")]
        body = {"required": True, "content": _fhir_content("Bundle", {"IPT course (transaction)": (
            ex.transaction_example(), walk.step_example(
                walk.TRANSACTION_STEP, "POST /fhir: a whole IPT course in one transaction",
                "Another patient's course, every resource with a server-assigned id (urn:uuid references); "
                "it needs nothing stored first, so it can run any time."))})}
        responses = {"200": {"description": "transaction-response or batch-response Bundle",
                             "content": _fhir_content("Bundle", {"transaction-response": ex.transaction_response_example()})},
                     **_errors("400", "404", "409", "412", "422")}
    elif interaction == "capabilities":
        responses = {"200": {"description": "The CapabilityStatement (every type, interaction and search parameter)",
                             "content": _fhir_content("Resource")}}
    elif interaction == "operation":
        name = operation_name(path) or ""
        in_schema, out_schema, description = OPERATION_BODIES.get(name, ("Parameters", "Resource", ""))
        if description and not op.get("description"):
            op["description"] = description
        if method == "GET":
            extra_params = _operation_query_parameters(name, rt)
            if name in OPERATION_STEPS:  # "Try it out" with the parameters' examples is part of the walk-through
                op["x-walkthrough-step"] = OPERATION_STEPS[name][0]
        if method == "POST" and in_schema:
            example = _post_example(name)
            body = {"required": False, "content": _fhir_content(in_schema, {f"{name} parameters": example} if example else None)}
        out_example = {"$ipt-progress": (ex.progress_parameters_example(), {
            "summary": "$ipt-progress result (its shape)",
            "description": "What a standard course answers after two held sessions with PHQ-9 scores 19 and 14. "
                           "The walk-through's own course (the request examples' steps) gives its own numbers: "
                           "its plan, sessions and scores differ."})}.get(name)
        if name in ("$export", "$import"):  # Bulk Data async pattern
            responses = {"202": {"description": "Accepted: poll the URL in Content-Location",
                                 "headers": {"Content-Location": {"description": "The status URL to poll",
                                                                  "schema": {"type": "string"}}},
                                 "content": _fhir_content("OperationOutcome")}, **_errors("400", "422")}
        elif name.endswith("-poll-status"):
            responses = {"202": {"description": "In progress (X-Progress, Retry-After); after DELETE: cancelled"},
                         "200": {"description": "Done: the job's manifest or result",
                                 "content": {"application/json": {"schema": {"type": "object"}}}},
                         **_errors("404")}
        elif name.endswith("-file"):
            responses = {"200": {"description": "NDJSON, one resource per line",
                                 "content": {"application/fhir+ndjson": {"schema": {"type": "string"}}}},
                         **_errors("404")}
        else:
            gone = ("410",) if name in _ON_A_DELETABLE_INSTANCE and "{" in path else ()
            responses = {"200": {"description": "The operation's result", "content": _fhir_content(
                out_schema, {f"{name} result": out_example} if out_example else None)},
                         **_errors("400", "404", *gone, "422")}

    if responses:
        kept = {code: resp for code, resp in op.get("responses", {}).items() if code in route_responses}
        op["responses"] = {**responses, **kept}
        _responses.setdefault("Error", {"description": "Any other error, as an OperationOutcome",
                                        "content": _fhir_content("OperationOutcome")})
        op["responses"].setdefault("default", {"$ref": "#/components/responses/Error"})
    if body is not None and "requestBody" not in op:
        op["requestBody"] = body
    names = {_param_key(p) for p in params}
    op["parameters"] = params + [p for p in extra_params if _param_key(p) not in names]
    if not op["parameters"]:
        op.pop("parameters")
    op.setdefault("x-fhir-interaction", interaction)
    return op


def _concrete(op: dict, method: str, path: str, resource_type: str, route_responses: set[str]) -> dict:
    op = copy.deepcopy(op)
    op["parameters"] = [p for p in op.get("parameters", []) if p.get("name") != "resource_type"]
    op["tags"] = [resource_type]
    summary = op.get("summary") or interaction_of(method, path)
    op["summary"] = f"{summary} {resource_type}" + (" in a Patient's compartment" if "{patient_id}" in path else "")
    concrete_path = path.replace("{resource_type}", resource_type)
    return _decorate(op, method, concrete_path, resource_type, route_responses)


def _route_responses(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """Status codes a route declared itself (`responses=`): its own documentation wins over ours."""
    out: dict[tuple[str, str], set[str]] = {}
    for route in app.routes:
        path = getattr(route, "path_format", None)
        for method in getattr(route, "methods", None) or ():
            out[(path, method.lower())] = {str(code) for code in (getattr(route, "responses", None) or {})}
    return out


def build_openapi(app: FastAPI) -> dict:
    _examples.clear()
    _responses.clear()
    _parameters.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GET+HEAD routes share an operationId; made unique below
        base = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                           openapi_version=app.openapi_version)
    declared = _route_responses(app)
    per_type: dict[str, dict] = {}
    generic: dict[str, dict] = {}
    other: dict[str, dict] = {}
    for path, item in base.get("paths", {}).items():
        for method, op in item.items():
            own = declared.get((path, method), set())
            if not path.startswith("/fhir"):
                other.setdefault(path, {})[method] = op
                continue
            if "{resource_type}" in path:
                types = PATIENT_COMPARTMENT_TYPES if "{patient_id}" in path else DOCUMENTED_TYPES
                for rt in types:
                    per_type.setdefault(rt, {}).setdefault(path.replace("{resource_type}", rt), {})[method] = (
                        _concrete(op, method, path, rt, own))
                generic_op = _decorate(op, method, path, None, own)
                generic_op["tags"] = ["any resource type"]
                generic.setdefault(path, {})[method] = generic_op
            else:
                literal = path[len("/fhir/"):].split("/", 1)[0] if path.startswith("/fhir/") else ""
                rt = literal if literal in DOCUMENTED_TYPES else None
                decorated = _decorate(op, method, path, rt, own)
                if rt and not any(t in (decorated.get("tags") or []) for t in ("search",)):
                    decorated["tags"] = [rt, *[t for t in decorated.get("tags", []) if t != rt]]
                other.setdefault(path, {})[method] = decorated

    paths: dict[str, dict] = {}
    for rt in DOCUMENTED_TYPES:
        for path, item in per_type.get(rt, {}).items():
            paths.setdefault(path, {}).update(item)
    for group in (other, generic):
        for path, item in group.items():
            paths.setdefault(path, {}).update(item)
    # Literal paths (e.g. /fhir/Patient/{patient_id}/$everything) and expanded ones may share a path.
    # Deterministic across processes: FastAPI derives ids (and orders methods) from a set of methods,
    # whose order changes with string hash randomisation. Method + path is unique by construction.
    order = ("get", "head", "post", "put", "patch", "delete", "options")
    for path in list(paths):
        item = paths[path]
        paths[path] = {m: item[m] for m in sorted(item, key=lambda m: order.index(m) if m in order else 99)}
        for method, op in paths[path].items():
            op["operationId"] = method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    doc = dict(base)
    doc["paths"] = paths
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(fhir_schemas())
    components["examples"] = dict(sorted(_examples.items()))
    components["responses"] = dict(sorted(_responses.items()))
    components["parameters"] = dict(sorted(_parameters.items()))
    doc["tags"] = ([{"name": rt, "description": TYPE_NOTES.get(rt, "")} for rt in DOCUMENTED_TYPES]
                   + [{"name": "any resource type",
                       "description": "The same interactions for every other FHIR R4 resource type"}])
    doc["info"]["description"] = (app.description or "") + (
        "\n\nEvery FHIR body is `application/fhir+json`; every error is an `OperationOutcome`. "
        "Versions are ETags (`W/\"n\"`); send `If-Match` to update without losing a concurrent change. "
        "The server's CapabilityStatement is at `GET /fhir/metadata`. Request bodies may be sent with "
        "`Content-Encoding: gzip` or `deflate`; responses of 8 KiB or more are gzipped for a client that "
        "sends `Accept-Encoding: gzip`.\n\n" + walk.OVERVIEW)
    doc["externalDocs"] = {"description": "FHIR R4 RESTful API", "url": "https://hl7.org/fhir/R4/http.html"}
    return doc


def install(app: FastAPI) -> None:
    """Serve the generated document at /openapi.json (built once, on first request)."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def export_app():  # noqa: ANN201
    """The app as deployed, for exporting its document (no database is touched)."""
    from ipt_fhir.app import create_app
    from ipt_fhir.settings import Settings
    from ipt_fhir.store.database import Database

    import atexit
    import shutil
    import tempfile

    from ipt_fhir.store import migrate

    directory = tempfile.mkdtemp(prefix="ipt-fhir-openapi-")
    atexit.register(shutil.rmtree, directory, True)
    settings = Settings(database_url=f"sqlite:///{directory}/openapi.db", bulk_dir=f"{directory}/bulk")
    migrate.upgrade(settings.database_url)
    return create_app(settings, Database(settings.database_url))


def render(document: dict) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def export_text() -> str:
    return render(export_app().openapi())


def main(argv: list[str]) -> int:
    text = export_text()
    if len(argv) > 1:
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
