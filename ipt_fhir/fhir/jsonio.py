"""FHIR JSON in and out, losslessly.

Why not plain orjson: FHIR decimals keep their precision ("1.50" is not "1.5",
http://hl7.org/fhir/R4/json.html#primitive), and duplicate keys must be rejected. The standard library
parser gives us both hooks; decimals parse to `FhirDecimal`, a float that remembers its source text,
and orjson writes that text back verbatim through `orjson.Fragment`. The integer -0 (valid FHIR integer
and decimal text, which Python's int cannot hold) parses to `NegativeZero` and is written back as -0.
"""
from __future__ import annotations

import json
import math
import re
import sys
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


class NegativeZero(int):
    """The JSON integer -0: zero, written back as "-0". Lexically valid for FHIR integer and decimal alike
    (datatypes.html), so it is an int (integer checks accept this type too), yet Python's int has no
    sign for zero; a decimal keeps the text as sent (json.html: decimals keep their precision). -0.0 and
    -0e0 are decimals already, FhirDecimal."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "-0"


# Python refuses to convert integers of more digits than this (a guard against quadratic conversion
# time); a JSON integer that long is still a valid FHIR decimal, so it is kept as one, exact.
_INT_DIGITS = sys.get_int_max_str_digits() or math.inf


def _parse_int(text: str) -> int:
    if text == "-0":
        return NEGATIVE_ZERO
    return int(text) if len(text) - (text[0] == "-") <= _INT_DIGITS else FhirDecimal(text)


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


# The slow path: it already calls Python per object (duplicate keys), so an integer's call costs nothing
# that shows, and it keeps the sign of an integer -0, which orjson and the decoder below read as 0.
_decoder = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_float=FhirDecimal,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
)
# For text already known to be sound JSON without duplicate keys (see _verdict): decimals only.
_exact_decoder = json.JSONDecoder(parse_float=FhirDecimal, parse_constant=_reject_constant)
# The integer -0: "-0" followed by no fraction or exponent (a decimal then, which FhirDecimal keeps) and
# no digit (never valid JSON), so dates and offsets ("2020-01-05", "-05:00") never match. A pattern that
# starts with a literal: a few microseconds for a typical resource (one with a leading character class
# costs as much as the parse). Strings match it too (a uuid's "-0a3f", an identifier "ABC-0"), so a match
# counts only where a JSON value starts: after ':', '[' or ',' (and blanks), or as the whole text. A string
# holding such text ("x:-0 y") only sends the body to the slower parser, which then decides.
_SIGNED_ZERO = re.compile(r"-0(?![0-9.eE])")
_SIGNED_ZERO_BYTES = re.compile(rb"-0(?![0-9.eE])")


def _has_signed_zero(text: str | bytes) -> bool:
    blanks, starts = (" \t\r\n", ":[,") if isinstance(text, str) else (b" \t\r\n", b":[,")
    for match in (_SIGNED_ZERO if isinstance(text, str) else _SIGNED_ZERO_BYTES).finditer(text):
        i = match.start() - 1
        while i >= 0 and text[i] in blanks:
            i -= 1
        if i < 0 or text[i] in starts:
            return True
    return False


MAX_DEPTH = 64  # deepest accepted nesting of request bodies (IPT_FHIR_MAX_JSON_DEPTH sets it at startup)


def parse_json(body: bytes | str) -> Any:
    """Parse a request body; malformed JSON, duplicate keys or too deep nesting raise a 400 FHIRError.

    Fast path: orjson, then C-speed checks on orjson's own re-serialisation of the result (_verdict): no
    decimal, no duplicate key, not too deep returns orjson's result; only decimals, the standard-library
    parser's (exact decimals, no per-object hook). When the checks cannot decide: one walk of the result
    (depth, key count, any decimal) and one scan of the text counting its keys; bodies with decimals
    (whose exact text must be kept) or duplicate keys (whose error must name the key) then take the
    slower standard-library parser with its hooks.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    except UnicodeDecodeError as exc:
        raise FHIRError(400, [error("structure", f"Body is not UTF-8: {exc.reason} at byte {exc.start}")])
    if text.startswith("\ufeff"):
        text = text[1:]
    fast = _UNPARSED  # a body with an integer -0 goes to the slow path (_decoder) at once
    if not _has_signed_zero(text):
        try:
            fast = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    if fast is not _UNPARSED:
        limit = depth_limit(fast)
        verdict = _verdict(text, fast, limit)
        if verdict is _PLAIN:
            return fast
        if verdict is _DECIMALS:
            # Sound JSON whose only issue is decimals: the standard library's C parser with exact decimals
            # gives what the hooked parser below would, minus a Python call per object.
            try:
                return _exact_decoder.decode(text)
            except ValueError:  # not expected (orjson accepted the text); the path below decides
                pass
        depth, keys, has_decimal = _shape(fast)
        if depth > limit:
            raise _too_deep(limit)
        if not has_decimal and keys == _count_keys(text):
            return fast
    try:
        # The standard library parser guards its own recursion (RecursionError below); the depth limit
        # was checked on orjson's result, or is checked on this one.
        result = _decoder.decode(text)
        if fast is _UNPARSED and _shape(result)[0] > depth_limit(result):
            raise _too_deep(depth_limit(result))
        if _SURROGATE_ESCAPE.search(text):
            _reject_lone_surrogates(result)
        return result
    except DuplicateKeyError as exc:
        raise FHIRError(400, [error("structure", f"Duplicate JSON property '{exc.key}'")])
    except RecursionError:
        raise FHIRError(400, [error("structure", "JSON nesting is too deep")])
    except ValueError as exc:
        raise FHIRError(400, [error("structure", f"Malformed JSON: {exc}")])


# The levels a Bundle or Parameters adds above the resources it carries (Bundle > entry > [i] > resource):
# MAX_DEPTH bounds a resource's own nesting, so a resource accepted alone is accepted inside one too.
WRAPPER_DEPTH = 3
_WRAPPERS = ("Bundle", "Parameters")


def depth_limit(value: Any) -> int:
    """The deepest nesting accepted for a parsed body: MAX_DEPTH, plus WRAPPER_DEPTH for a Bundle or
    Parameters."""
    if type(value) is dict and value.get("resourceType") in _WRAPPERS:
        return MAX_DEPTH + WRAPPER_DEPTH
    return MAX_DEPTH


def _too_deep(limit: int) -> FHIRError:
    return FHIRError(400, [error("too-costly", f"JSON nesting is deeper than {limit} levels")])


_UNPARSED = object()
NEGATIVE_ZERO = NegativeZero(0)
_NEGATIVE_ZERO_TEXT = orjson.Fragment("-0")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_lone_surrogates(value: Any) -> None:
    """The standard-library parser accepts an unpaired \\uD800 escape (orjson does not): such a string is
    not Unicode, cannot be stored or echoed in an OperationOutcome, so it is malformed input (400)."""
    try:
        dump_json(value)  # which writes integers beyond 64 bits too: only the surrogate can fail it
    except orjson.JSONEncodeError:
        raise FHIRError(400, [error("structure", "Malformed JSON: a \\u escape is an unpaired UTF-16 surrogate")]) from None


# Number tokens of orjson's indented output reduced to what tells a decimal from an integer: digits,
# signs and spaces dropped, exponent letters turned into '.', so a decimal leaves a '.' right after its
# key's `":` or, as an array item, right after the newline that starts its line.
_NUMBER_SHAPE = bytes.maketrans(b"eE", b"..")
_NUMBER_NOISE = b"0123456789+- "


_PLAIN, _DECIMALS = "plain", "decimals"


def _verdict(text: str, value: Any, limit: int) -> str | None:
    """_PLAIN when orjson's result is certainly the final one (no decimal, no duplicate key, not too
    deep); _DECIMALS when decimals are the only reason it is not; None: let the exact walk decide.

    Decided on orjson.dumps(value, OPT_INDENT_2), a walk in C, instead of a walk in Python:
    - depth: the items of a container at depth d are indented by 2*d spaces, so without any line indented
      by 2*limit nothing is deeper than `limit` (strings never hold a raw newline);
    - duplicate keys: the input's colons are its keys plus the colons inside its strings; the output's are
      the surviving keys plus the colons of the surviving strings. Equal counts mean nothing was dropped,
      unless a backslash-u escape (\\u003a) hides a colon in the input, hence none of those at all;
    - decimals: orjson writes every float with a '.' or an exponent and ints with neither (see
      _NUMBER_SHAPE). An escaped quote and colon inside a string can only make it see a decimal that is
      not there (harmless: the exact parser is used), never miss one.
    """
    # a \\u escape may hide a colon (above); the one-character search first: most bodies have no backslash
    if (type(value) is not dict and type(value) is not list) or ("\\" in text and "\\u" in text):
        return None
    try:
        out = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except orjson.JSONEncodeError:  # e.g. orjson's own depth limit
        return None
    if b"\n" + b" " * (2 * limit) in out:
        return None
    shape = out.translate(_NUMBER_SHAPE, _NUMBER_NOISE)  # keeps every colon; shorter to count in
    if text.count(":") != shape.count(b":"):
        return None
    return _DECIMALS if b'":.' in shape or b"\n." in shape else _PLAIN


# In valid JSON an unescaped quote followed by a colon can only close an object key (a quote inside a
# string is escaped). Counted with str.count, the cheapest scan there is; anything it cannot count
# exactly (space before the colon, a key ending in an escaped backslash) only sends the text to the
# slow parser, since a smaller count never equals the parsed one... unless keys were lost to
# duplicates, which is why those cases return -1 rather than a guess.
def _count_keys(text: str) -> int:
    if '\\\\"' in text or '" :' in text or '"\t:' in text or '"\n:' in text or '"\r:' in text:
        return -1
    return text.count('":') - text.count('\\":')


def _shape(value: Any) -> tuple[int, int, bool]:
    """(nesting depth, number of object keys, whether any number is a decimal) without recursion."""
    deepest, keys, has_decimal = 0, 0, False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            keys += len(node)
            children = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        if depth > deepest:
            deepest = depth
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float:
                has_decimal = True
    return deepest, keys, has_decimal


def _default(value: Any) -> Any:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.text)
    if type(value) is NegativeZero:
        return _NEGATIVE_ZERO_TEXT
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dump_json(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_PASSTHROUGH_SUBCLASS | (orjson.OPT_INDENT_2 if pretty else 0)
    try:
        return orjson.dumps(value, default=_default, option=option)
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits (valid JSON, and a FHIR decimal may be that large): orjson writes
        # none, so such integers go out as their digits. Whatever else failed fails again.
        return orjson.dumps(_big_integers_as_text(value), default=_default, option=option)


def _big_integers_as_text(value: Any) -> Any:
    kind = type(value)
    if kind is int and not -(1 << 63) <= value < (1 << 64):
        return orjson.Fragment(str(value))
    if kind is dict:
        return {k: _big_integers_as_text(v) for k, v in value.items()}
    if kind is list:
        return [_big_integers_as_text(v) for v in value]
    return value


def load_stored(data: bytes) -> Any:
    """Parse JSON the server wrote itself (already validated, no duplicate keys), keeping decimals exact
    (and the integer -0's sign)."""
    if _has_signed_zero(data):
        return json.loads(data, parse_float=FhirDecimal, parse_int=_parse_int)
    return json.loads(data, parse_float=FhirDecimal)
