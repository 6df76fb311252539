"""Primitive values: their exact JSON types (json.html#primitive) and the regexes of profiles-types.

Each checker returns None when the value is valid, otherwise a diagnostic. Python's bool is an int,
so integer checks test `type(v) is int` (or NegativeZero, the JSON integer -0); decimals arrive as int
or FhirDecimal (a float), never str.
"""
from __future__ import annotations

import calendar
import re
from typing import Callable

from ..jsonio import NegativeZero
from .definitions import structures
from .xhtml import check_xhtml

MAX_STRING = 1024 * 1024
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Checker = Callable[[object], "str | None"]


# The code regex the definitions publish, [^\s]+(\s[^\s]+)*, lets any one whitespace character (a tab, a
# newline) stand between words. Its own definition text (datatypes.html#code, profiles-types) says more:
# "no leading or trailing whitespace, and where there is no whitespace other than single spaces in the
# contents", and HL7's reference validator checks that text (only ' ' between words). The text rules.
_REGEX_OVERRIDES = {"code": r"[^\s]+( [^\s]+)*"}


def _regex(name: str) -> re.Pattern[str] | None:
    pattern = _REGEX_OVERRIDES.get(name) or structures()["primitives"][name]["regex"]
    # The published regexes are XML-Schema/Java flavoured: \s and \S mean ASCII whitespace only.
    return re.compile(pattern, re.ASCII) if pattern else None


def _valid_calendar_date(text: str) -> bool:
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
        return day <= calendar.monthrange(year, month)[1]
    return True


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


# Checks of short strings are memoised per type: codes, system URIs, references and dates repeat across
# the elements of a resource and across the resources of a bundle or import. A check's verdict depends on
# the string alone, so a memo can never answer for a different input; it is bounded and simply emptied
# when full. Only str values are looked up (1, 1.0 and True are equal dict keys; their checks differ).
MEMO_MAX_LEN = 256
MEMO_ENTRIES = 4096
MISS = object()


def _memoised(check_text: Callable[[str], "str | None"], label: str) -> Checker:
    memo: dict[str, str | None] = {}

    def check(v: object) -> str | None:
        if type(v) is not str:
            return f"Expected a JSON string for {label}, found {_json_kind(v)}"
        msg = memo.get(v, MISS)
        if msg is MISS:
            msg = check_text(v)
            if len(v) <= MEMO_MAX_LEN:
                if len(memo) >= MEMO_ENTRIES:
                    memo.clear()
                memo[v] = msg
        return msg  # type: ignore[return-value]

    check.memo = memo  # type: ignore[attr-defined]  # the walker reads it directly (see engine._Walk.obj)
    return check


def _text_checker(name: str) -> Callable[[str], "str | None"]:
    rx = _regex(name)
    label = name

    def check_text(v: str) -> str | None:
        if not v:
            return f"A {label} must not be an empty string"
        if len(v) > MAX_STRING // 4 and len(v.encode("utf-8")) > MAX_STRING:
            return f"A {label} must not exceed 1 MB"
        if rx is not None and rx.fullmatch(v) is None:
            return f"'{_clip(v)}' is not a valid {label}"
        if _CONTROL.search(v):  # datatypes.html#string; PostgreSQL text cannot even store NUL
            return f"A {label} must not contain control characters other than tab, CR and LF"
        return None

    return check_text


def _string_checker(name: str) -> Checker:
    return _memoised(_text_checker(name), name)


def _date_checker(name: str) -> Checker:
    base = _text_checker(name)

    def check_text(v: str) -> str | None:
        msg = base(v)
        if msg is None and not _valid_calendar_date(v):
            return f"'{v}' is not a valid {name}: no such day"
        return msg

    return _memoised(check_text, name)


def _check_boolean(v: object) -> str | None:
    if type(v) is not bool:
        return f"Expected a JSON boolean (true or false), found {_json_kind(v)}"
    return None


def _int_checker(name: str, minimum: int) -> Checker:
    def check(v: object) -> str | None:
        if type(v) is not int and (type(v) is not NegativeZero or minimum >= 0):
            # -0 matches R4's integer regex, -?([0]|([1-9][0-9]*)), but not unsignedInt's or positiveInt's
            return f"Expected a JSON integer for {name}, found {_json_kind(v)}" if type(v) is not NegativeZero \
                else f"-0 is not a valid {name}"
        if v < minimum or v > INT32_MAX:
            bound = f">= {minimum}" if v < minimum else f"<= {INT32_MAX}"
            return f"{v} is not a valid {name} (must be {bound})"
        return None

    return check


def _check_decimal(v: object) -> str | None:
    if type(v) is bool or not isinstance(v, (int, float)):
        return f"Expected a JSON number for decimal, found {_json_kind(v)}"
    return None


_BASE64_CHARS = re.compile(r"[0-9a-zA-Z+/=]*", re.ASCII)
_WS = re.compile(r"\s+", re.ASCII)


def _check_base64(v: object) -> str | None:
    r"""The published regex, (\s*([0-9a-zA-Z\+/=]){4}\s*)+, backtracks badly on megabyte attachments;
    this is the same language: base64 characters in groups of four, whitespace ignored."""
    if type(v) is not str:
        return f"Expected a JSON string for base64Binary, found {_json_kind(v)}"
    if not v:
        return "A base64Binary must not be an empty string"
    compact = _WS.sub("", v) if not v.isalnum() else v
    if not compact or len(compact) % 4 or _BASE64_CHARS.fullmatch(compact) is None:
        return f"'{_clip(v)}' is not valid base64Binary"
    return None


def _check_xhtml(v: object) -> str | None:
    if type(v) is not str:
        return f"Expected a JSON string for xhtml, found {_json_kind(v)}"
    if not v:
        return "xhtml must not be an empty string"
    return check_xhtml(v)


def _json_kind(v: object) -> str:
    if v is None:
        return "null"
    if type(v) is bool:
        return f"boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
    if isinstance(v, str):
        return f"string \"{_clip(v)}\""
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[:n] + "..."


def build_checkers() -> dict[str, Checker]:
    checkers: dict[str, Checker] = {
        "boolean": _check_boolean,
        "integer": _int_checker("integer", INT32_MIN),
        "positiveInt": _int_checker("positiveInt", 1),
        "unsignedInt": _int_checker("unsignedInt", 0),
        "decimal": _check_decimal,
        "xhtml": _check_xhtml,
        "base64Binary": _check_base64,
    }
    for name in ("date", "dateTime", "instant"):
        checkers[name] = _date_checker(name)
    for name in structures()["primitives"]:
        checkers.setdefault(name, _string_checker(name))
    return checkers


CHECKERS = build_checkers()
json_kind = _json_kind
