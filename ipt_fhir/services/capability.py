"""The CapabilityStatement (http://hl7.org/fhir/R4/capabilitystatement.html), generated from what the
server really has: its resource types, interactions, the search registry, operations and profiles."""
from __future__ import annotations

from ipt_fhir import __version__
from ipt_fhir.fhir.outcome import bad_request
from ipt_fhir.fhir.resource_types import FHIR_VERSION, REST_TYPES
from ipt_fhir.services.search import search_include_names, search_params_for_capability

TYPE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type",
                     "create", "search-type"]
# AuditEvents are written by the server only (security/guard.py): clients may read and search them.
READ_ONLY_TYPES = {"AuditEvent"}
READ_INTERACTIONS = ["read", "vread", "history-instance", "history-type", "search-type"]
SYSTEM_INTERACTIONS = ["transaction", "batch", "history-system", "search-system"]
# Bulk data (services/bulk_import.py, services/bulk_export.py); $import follows the Bulk Import draft.
SYSTEM_OPERATIONS = [
    {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
    {"name": "import", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/import"},
]
VALIDATE = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
# services/meta_operations.py; $meta-add and $meta-delete change a resource, so not on read-only types
META = {"name": "meta", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-meta"}
META_CHANGES = [{"name": "meta-add", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-meta-add"},
                {"name": "meta-delete", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-meta-delete"}]
TYPE_OPERATIONS = {
    "Patient": [
        {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
        {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"},
    ],
    "Group": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}],
}


def capability_statement(base_url: str, *, released: str, extra_operations: dict[str, list[dict]] | None = None,
                         supported_profiles: dict[str, list[str]] | None = None,
                         system_interactions: list[str] | None = None, security: dict | None = None) -> dict:
    resources = []
    for resource_type in sorted(REST_TYPES):
        includes, revincludes = search_include_names(resource_type)
        read_only = resource_type in READ_ONLY_TYPES
        entry = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in (READ_INTERACTIONS if read_only else TYPE_INTERACTIONS)],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": not read_only,
            "conditionalCreate": not read_only,
            "conditionalRead": "full-support",  # If-Modified-Since and If-None-Match (responses.not_modified)
            "conditionalUpdate": not read_only,
            "conditionalDelete": "not-supported" if read_only else "multiple",
            "searchInclude": includes,
            "searchRevInclude": revincludes,
            "searchParam": search_params_for_capability(resource_type),
            "operation": [VALIDATE, META] + ([] if read_only else META_CHANGES) + TYPE_OPERATIONS.get(resource_type, [])
            + (extra_operations or {}).get(resource_type, []),
        }
        if supported_profiles and resource_type in supported_profiles:
            entry["supportedProfile"] = supported_profiles[resource_type]
        # JSON has no empty arrays in FHIR (json.html): a type with nothing to _include leaves the element out
        resources.append({key: value for key, value in entry.items() if value != []})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": released,
        "publisher": "ipt-fhir",
        "kind": "instance",
        "software": {"name": "ipt-fhir", "version": __version__},
        "implementation": {"description": "ipt-fhir: FHIR R4 server for Interpersonal Psychotherapy", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": code} for code in (system_interactions or SYSTEM_INTERACTIONS)],
            "operation": SYSTEM_OPERATIONS + [META],
            # GET Patient/[id]/[type] and Patient/[id]/* search the patient's compartment (search_routes)
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            **({"security": security} if security else {}),
        }],
    }


# http.html#capabilities: `mode` asks for the full statement (the default), its normative portions (all
# of it: CapabilityStatement and everything it says are normative in R4) or the TerminologyCapabilities.
METADATA_MODES = ("full", "normative", "terminology")


def metadata_mode(modes: list[str]) -> str:
    """What `GET metadata` with these `mode` values answers: "terminology" (TerminologyCapabilities) or
    "full" (the CapabilityStatement, also for "normative"); a 400 for an unknown or contradictory mode."""
    for mode in modes:
        if mode not in METADATA_MODES:
            raise bad_request(f"mode must be full, normative or terminology, got '{mode}'", "mode")
    if len(set(modes)) > 1:
        raise bad_request(f"mode given more than once, with different values: {', '.join(modes)}", "mode")
    return "terminology" if modes and modes[0] == "terminology" else "full"
