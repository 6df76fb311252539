"""FHIR JSON in and out, losslessly.

Why not plain orjson: FHIR decimals keep their precision ("1.50" is not "1.5",
http://hl7.org/fhir/R4/json.html#primitive), and duplicate keys must be rejected. The standard library
parser gives us both hooks; decimals parse to `FhirDecimal`, a float that remembers its source text,
and orjson writes that text back verbatim through `orjson.Fragment`.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

from .outcome import FHIRError, error


class FhirDecimal(float):
    """A JSON number with a fraction or exponent, remembering the exact text it was written as."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> "FhirDecimal":
        value = super().__new__(cls, text)
        value.text = text
        return value

    def __repr__(self) -> str:
        return self.text


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_float=FhirDecimal,
    parse_constant=_reject_constant,
)


def parse_json(body: bytes | str) -> Any:
    """Parse a request body; malformed JSON or duplicate keys raise a 400 FHIRError."""
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    except UnicodeDecodeError as exc:
        raise FHIRError(400, [error("structure", f"Body is not UTF-8: {exc.reason} at byte {exc.start}")])
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _decoder.decode(text)
    except DuplicateKeyError as exc:
        raise FHIRError(400, [error("structure", f"Duplicate JSON property '{exc.key}'")])
    except RecursionError:
        raise FHIRError(400, [error("structure", "JSON nesting is too deep")])
    except ValueError as exc:
        raise FHIRError(400, [error("structure", f"Malformed JSON: {exc}")])


def _default(value: Any) -> Any:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.text)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dump_json(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_PASSTHROUGH_SUBCLASS | (orjson.OPT_INDENT_2 if pretty else 0)
    return orjson.dumps(value, default=_default, option=option)


def load_stored(data: bytes) -> Any:
    """Parse JSON the server wrote itself (already validated, no duplicate keys), keeping decimals exact."""
    return json.loads(data, parse_float=FhirDecimal)
