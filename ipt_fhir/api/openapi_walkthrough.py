"""The order in which the request examples of the OpenAPI document run on a fresh server.

The IPT resources refer to each other and the rules refuse a reference to what does not exist (a goal
must address a stored Condition, a course its CarePlan, a session its course, ...). So the examples form
a walk-through: the update (PUT) examples create one course with fixed ids, each after what it refers to;
the create (POST), patch and operation examples then refer to those ids. Each example says its step in
its summary, and carries it as `x-walkthrough-step` (tests/production/test_openapi_walkthrough.py runs
them in that order on a fresh database).
"""
from __future__ import annotations

# PUT order: each resource only refers to the ones before it (the CarePlan's activity refers to the
# course, which the rules do not check; the course refers to the plan, which they do).
FIXED_IDS = {
    "Patient": "ipt-example-patient",
    "Practitioner": "ipt-example-therapist",
    "Condition": "ipt-example-diagnosis",
    "Goal": "ipt-example-goal",
    "CarePlan": "ipt-example-plan",
    "ServiceRequest": "ipt-example-course",
    "Encounter": "ipt-example-session-1",
    "Observation": "ipt-example-phq9-1",
    "Procedure": "ipt-example-procedure-1",
}
APPLIED_PROTOCOL = "ipt-standard-individual"

_PUT_STEPS = {rtype: n for n, rtype in enumerate(FIXED_IDS, start=1)}
CREATE_STEP = len(FIXED_IDS) + 1
PATCH_STEP = CREATE_STEP + 1
TRANSACTION_STEP = PATCH_STEP + 1
APPLY_STEP = TRANSACTION_STEP + 1
PROGRESS_STEP = APPLY_STEP + 1

OVERVIEW = (
    "**Examples on a fresh server.** The request examples build on each other; run them in this order "
    "(each one's summary says its step): "
    + "; ".join(f"{n}. `PUT /fhir/{rtype}/{rid}`" for n, (rtype, rid) in enumerate(FIXED_IDS.items(), start=1))
    + f"; {CREATE_STEP}. any `POST /fhir/[type]` (create) example, each once; {PATCH_STEP}. the `PATCH` examples; "
    f"{TRANSACTION_STEP}. `POST /fhir` (a whole course in one transaction, any time); {APPLY_STEP}. "
    f"`$apply`; {PROGRESS_STEP}. `GET /fhir/CarePlan/{FIXED_IDS['CarePlan']}/$ipt-progress`. A create example run "
    "twice may be refused by the IPT rules (a second copy of a session or course goes past the protocol).")


def update_step(resource_type: str) -> dict:
    step = _PUT_STEPS[resource_type]
    rid = FIXED_IDS[resource_type]
    before = ", ".join(f"{t}/{FIXED_IDS[t]}" for t in list(FIXED_IDS)[:step - 1])
    return step_example(step, f"PUT {resource_type}/{rid}",
                 f"Creates {resource_type}/{rid} (PUT creates a resource with the id of the URL)"
                 + (f"; run after {before}." if before else "; it refers to nothing, so it can run first.")
                 + " Run again, it writes a new version.")


def create_step(resource_type: str, what: str) -> dict:
    return step_example(CREATE_STEP, f"POST {resource_type}: {what}",
                 f"{what[0].upper()}{what[1:]}, with a server-assigned id; run after the PUT examples "
                 f"(steps 1-{CREATE_STEP - 1}), whose ids it refers to.")


def patch_step(resource_type: str, kind: str) -> dict:
    rid = FIXED_IDS[resource_type]
    return step_example(PATCH_STEP, f"{kind}: {resource_type}/{rid}",
                        f"Patches {resource_type}/{rid}; run after step {_PUT_STEPS[resource_type]}.")


def step_example(step: int, summary: str, description: str) -> dict:
    """What an example of walk-through step `step` carries beside its value."""
    return {"summary": f"Step {step}: {summary}", "description": description, "x-walkthrough-step": step}


def json_patch(resource: dict) -> list[dict]:
    """A JSON Patch the walk-through resource takes: one more item of a repeating element no rule reads."""
    element, item = _patched_element(resource["resourceType"])
    if isinstance(resource.get(element), list):
        return [{"op": "add", "path": f"/{element}/-", "value": item}]
    return [{"op": "add", "path": f"/{element}", "value": [item]}]


def fhirpath_patch(resource: dict) -> dict:
    """The same change as a FHIRPath Patch: `add` appends to a repeating element; a complex value is given
    as parts named after its elements."""
    rtype = resource["resourceType"]
    element, item = _patched_element(rtype)
    value = {"name": "value", "part": [{"name": k, "valueString": v} for k, v in item.items()]}
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": rtype},
        {"name": "name", "valueString": element}, value]}]}


def _patched_element(resource_type: str) -> tuple[str, dict]:
    if resource_type in ("Patient", "Practitioner"):
        return "telecom", {"system": "email", "value": "ipt-example@example.org"}
    if resource_type == "Encounter":  # Encounter has no note
        return "reasonCode", {"text": "Interpersonal role dispute discussed"}
    return "note", {"text": "Discussed at the weekly IPT supervision meeting"}
