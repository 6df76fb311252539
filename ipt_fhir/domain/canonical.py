"""Canonical URLs of the IPT conformance resources, and small readers for the FHIR JSON they describe.

The conformance JSON is authored under DEFAULT_CANONICAL_BASE and rewritten to the configured base when
loaded. Code that only *recognises* IPT artefacts (rules, progress, narrative) matches on the URL tail
(".../StructureDefinition/ipt-careplan"), so it works whatever base the server was configured with,
and with data written under an earlier base.
"""
from __future__ import annotations

from typing import Any, Iterable

DEFAULT_CANONICAL_BASE = "http://ipt-fhir.org/fhir"

# Profiles
CAREPLAN_PROFILE = "ipt-careplan"
GOAL_PROFILE = "ipt-goal"
SESSION_PROFILE = "ipt-session-encounter"
COURSE_PROFILE = "ipt-course-servicerequest"
SCORE_PROFILE = "ipt-symptom-score"
PROBLEM_AREA_PROFILE = "ipt-problem-area-condition"
PROFILES = (CAREPLAN_PROFILE, GOAL_PROFILE, SESSION_PROFILE, COURSE_PROFILE, SCORE_PROFILE, PROBLEM_AREA_PROFILE)

# Extensions
EXT_SESSION_NUMBER = "ipt-session-number"
EXT_PHASE = "ipt-phase"
EXT_PROBLEM_AREA_FOCUS = "ipt-problem-area-focus"
EXT_FORMAT = "ipt-format"
EXT_TECHNIQUE = "ipt-technique"
EXT_MECHANISM = "ipt-mechanism"
EXT_ATTENDANCE = "ipt-attendance"
EXT_PHASE_SESSION_COUNT = "ipt-phase-session-count"
EXT_TYPICAL_SESSION_COUNT = "ipt-typical-session-count"

# CodeSystems (each has a ValueSet of the same id holding all its codes)
CS_PROBLEM_AREA = "ipt-problem-area"
CS_PHASE = "ipt-phase"
CS_FORMAT = "ipt-format"
CS_TECHNIQUE = "ipt-technique"
CS_MECHANISM = "ipt-mechanism"
CS_ATTENDANCE = "ipt-attendance"
VS_SYMPTOM_SCORE = "ipt-symptom-score"

# External systems and codes
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
# IPT-DOMAIN.md: a session's type is CPT 90834 or 90837 (45 or 60 minutes), 90853 (group) or 90791 (intake)
CPT_DISPLAY = {"90791": "Psychiatric diagnostic evaluation", "90834": "Psychotherapy, 45 minutes with patient",
               "90837": "Psychotherapy, 60 minutes with patient", "90853": "Group psychotherapy"}
UCUM = "http://unitsofmeasure.org"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
US_CORE_CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
US_CORE_CONDITION_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
# Its codes (R4 CodeSystem goal-achievement; IPT-DOMAIN.md "Other codes")
GOAL_ACHIEVEMENT_CODES = frozenset({"in-progress", "improving", "worsening", "no-change", "achieved", "sustaining",
                                    "not-achieved", "no-progress", "not-attainable"})

SNOMED_IPT = "443730003"
SNOMED_MENTAL_HEALTH_CARE_PLAN = "718347000"
LOINC_PHQ9 = "44261-6"
LOINC_GAD7 = "70274-6"
LOINC_PHQ2 = "55758-7"
LOINC_PROMIS_SOCIAL = "77854-8"
SCORE_RANGES = {LOINC_PHQ9: (0, 27), LOINC_GAD7: (0, 21), LOINC_PHQ2: (0, 6)}


def canonical(base: str, kind: str, id_: str) -> str:
    return f"{base.rstrip('/')}/{kind}/{id_}"


def is_ipt_url(url: Any, kind: str, id_: str) -> bool:
    """True when `url` (optionally `|version`) names the IPT artefact kind/id under any base."""
    if not isinstance(url, str):
        return False
    return url.split("|", 1)[0].endswith(f"/{kind}/{id_}")


def claims_profile(resource: dict | None, profile_id: str) -> bool:
    if not resource:
        return False
    profiles = (resource.get("meta") or {}).get("profile") or []
    return any(is_ipt_url(p, "StructureDefinition", profile_id) for p in profiles)


def claimed_ipt_profile(resource: dict | None) -> str | None:
    for profile_id in PROFILES:
        if claims_profile(resource, profile_id):
            return profile_id
    return None


def extensions(element: dict | None, ext_id: str) -> list[dict]:
    if not element:
        return []
    return [e for e in element.get("extension") or [] if is_ipt_url(e.get("url"), "StructureDefinition", ext_id)]


def extension_value(element: dict | None, ext_id: str, value_key: str) -> Any:
    for ext in extensions(element, ext_id):
        if value_key in ext:
            return ext[value_key]
    return None


def session_number(encounter: dict) -> int | None:
    value = extension_value(encounter, EXT_SESSION_NUMBER, "valuePositiveInt")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def session_phase(encounter: dict) -> str | None:
    coding = extension_value(encounter, EXT_PHASE, "valueCoding") or {}
    return coding.get("code") if is_ipt_url(coding.get("system"), "CodeSystem", CS_PHASE) else None


def session_attendance(encounter: dict) -> str | None:
    """The session's ipt-attendance code (attended, no-show, cancelled-by-patient, cancelled-by-clinician)."""
    coding = extension_value(encounter, EXT_ATTENDANCE, "valueCoding") or {}
    return coding.get("code") if is_ipt_url(coding.get("system"), "CodeSystem", CS_ATTENDANCE) else None


def codings(concept: dict | None) -> list[dict]:
    return list((concept or {}).get("coding") or [])


def has_coding(concepts: Iterable[dict] | dict | None, system: str, code: str) -> bool:
    if concepts is None:
        return False
    if isinstance(concepts, dict):
        concepts = [concepts]
    return any(c.get("system") == system and c.get("code") == code for cc in concepts for c in codings(cc))


def ipt_coding(concept: dict | None, cs_id: str) -> dict | None:
    for c in codings(concept):
        if is_ipt_url(c.get("system"), "CodeSystem", cs_id):
            return c
    return None


def reference(resource_type: str, id_: str) -> str:
    return f"{resource_type}/{id_}"


def split_reference(ref: Any) -> tuple[str, str] | None:
    """'CarePlan/1', 'http://x/fhir/CarePlan/1/_history/2' -> ('CarePlan', '1'). None for urn:, #contained."""
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str) or ref.startswith(("#", "urn:")):
        return None
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return parts[-2], parts[-1]


def same_reference(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        a = a.get("reference")
    if isinstance(b, dict):
        b = b.get("reference")
    if a is None or b is None:
        return False
    if a == b:
        return True
    sa, sb = split_reference(a), split_reference(b)
    return sa is not None and sa == sb


def subject_of(resource: dict | None) -> str | None:
    return ((resource or {}).get("subject") or {}).get("reference")


def same_subject(a: str | None, b: str | None) -> bool:
    """Two subject references that do not contradict each other: the same, or either one unknown."""
    return a is None or b is None or same_reference(a, b)


def resource_reference(resource: dict) -> str | None:
    if resource.get("id"):
        return reference(resource["resourceType"], resource["id"])
    return None
