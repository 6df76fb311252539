"""Patient compartment membership (http://hl7.org/fhir/R4/compartmentdefinition-patient.html).

The vendored Patient CompartmentDefinition names, per resource type, the search parameters whose
references put a resource in a patient's compartment. Their values are taken from the resource JSON
with the same FHIRPath extractors that write the search index, so a resource is in a compartment here
exactly when a compartment search finds it — for any version, including ones not yet stored. Patients
are the exception: a patient/ token's access is to its own Patient, so those whose `link` puts them in
its compartment are left out here and in the search confinement (search_filter.py) alike.
"""
from __future__ import annotations

from functools import lru_cache

from ipt_fhir.fhir.search.indexer import index_rows
from ipt_fhir.fhir.search.registry import patient_compartment, patient_compartment_params


@lru_cache(maxsize=1)  # read by compartment searches, $everything, $export and patient/ scope checks
def compartment_types() -> frozenset[str]:
    return frozenset(patient_compartment()) | {"Patient"}


def in_patient_compartment_type(resource_type: str) -> bool:
    return resource_type in compartment_types()


def patients_of(resource_type: str, resource: dict) -> set[str]:
    """Ids of the patients whose compartment holds this resource. Only relative references count: an
    absolute URL may name another server's patient with the same id (search.html#reference: `Patient/x`
    is a local reference). A compartment search also counts absolute URLs of this server's own base;
    without the request's base this check leaves those out, so it errs towards refusing access."""
    if resource_type == "Patient":  # its own, not those linking to it (module docstring)
        rid = resource.get("id")
        return {rid} if rid else set()
    wanted = patient_compartment_params(resource_type)
    if not wanted:
        return set()
    rows = index_rows(resource_type, resource).get("reference", [])
    # a row: (param, target type, target id, target version, url), url set only for absolute references
    return {row[2] for row in rows if row[0] in wanted and row[1] == "Patient" and row[2] and row[4] is None}


def in_compartment(resource_type: str, resource: dict, patient_id: str) -> bool:
    return patient_id in patients_of(resource_type, resource)
