"""The TerminologyCapabilities GET /fhir/metadata?mode=terminology answers with (http.html#capabilities,
terminologycapabilities.html): the code systems this server knows, generated from the validator's
terminology, and no terminology operations, because it has none."""
from __future__ import annotations

from ipt_fhir import __version__
from ipt_fhir.fhir.validation.terminology import known_code_systems


def terminology_capabilities(base_url: str, *, released: str) -> dict:
    code_systems = []
    for url, version in sorted(known_code_systems().items()):
        entry: dict = {"uri": url}
        if version:
            entry["version"] = [{"code": version, "isDefault": True}]
        code_systems.append(entry)
    return {
        "resourceType": "TerminologyCapabilities",
        "status": "active",
        "date": released,
        "publisher": "ipt-fhir",
        "description": "The code systems whose codes this server checks where a resource binds an element to "
                       "a value set with required strength (R4's own and the IPT layer's). It offers no "
                       "terminology operations: no $expand, $validate-code, $lookup, $translate or closure.",
        "kind": "instance",
        "software": {"name": "ipt-fhir", "version": __version__},
        "implementation": {"description": "ipt-fhir: FHIR R4 server for Interpersonal Psychotherapy", "url": base_url},
        "codeSystem": code_systems,
    }
