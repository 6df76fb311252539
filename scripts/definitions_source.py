"""The one argument every vendoring script takes: where the official FHIR R4 (4.0.1) definitions are.

They are HL7's downloads (http://hl7.org/fhir/R4/downloads.html): the JSON definitions bundles
(profiles-types, profiles-resources, search-parameters, valuesets, v3-codesystems, …) and the JSON
Schema, each gzipped. The server never reads them; it loads what these scripts write into
ipt_fhir/fhir/definitions/.
"""
from __future__ import annotations

import sys
from pathlib import Path


def source_path(argv: list[str], what: str) -> Path:
    """argv[1] as an existing path, or exit with the usage line."""
    if len(argv) < 2 or not Path(argv[1]).exists():
        sys.exit(f"usage: python {Path(argv[0]).name} PATH  (PATH: {what})")
    return Path(argv[1])
