"""Security labels that need the extra sensitive scope to read (meta.security):
PSYTHPN (psychotherapy note, v3-ActCode) and R (restricted, v3-Confidentiality)."""
from __future__ import annotations

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SENSITIVE_LABELS = ((ACT_CODE, "PSYTHPN"), (CONFIDENTIALITY, "R"))


def is_sensitive(resource: dict) -> bool:
    for coding in (resource.get("meta") or {}).get("security") or ():
        if not isinstance(coding, dict):
            continue
        system, code = coding.get("system"), coding.get("code")
        for label_system, label_code in SENSITIVE_LABELS:
            if code == label_code and system in (label_system, None):
                return True
    return False


def may_be_sensitive(content: bytes) -> bool:
    """Cheap pre-check on stored bytes: no meta.security at all means no label."""
    return b'"security"' in content
