"""Required-binding terminology: the vendored R4 expansions plus what the IPT layer registers."""
from __future__ import annotations

from .definitions import value_sets

_registered_value_sets: dict[str, dict] = {}
_registered_code_systems: dict[str, dict] = {}
# url -> {system: frozenset(codes)} or None when not enforceable
_expansions: dict[str, dict[str, frozenset[str]] | None] = {}
# url -> union of all codes (for `code` elements, whose system is implied)
_all_codes: dict[str, frozenset[str]] = {}


def register_value_set(value_set: dict) -> None:
    url = value_set["url"].split("|", 1)[0]
    _registered_value_sets[url] = value_set
    _expansions.clear()
    _all_codes.clear()


def register_code_system(code_system: dict) -> None:
    _registered_code_systems[code_system["url"].split("|", 1)[0]] = code_system
    _expansions.clear()
    _all_codes.clear()


def _concepts(concepts: list[dict], out: set[str]) -> None:
    for c in concepts:
        out.add(c["code"])
        _concepts(c.get("concept", []), out)


def _code_system_codes(system: str) -> frozenset[str] | None:
    cs = _registered_code_systems.get(system)
    if cs is not None:
        codes: set[str] = set()
        _concepts(cs.get("concept", []), codes)
        return frozenset(codes)
    return None


def _expand_registered(vs: dict, stack: tuple[str, ...]) -> dict[str, frozenset[str]] | None:
    if "expansion" in vs and vs["expansion"].get("contains"):
        out: dict[str, set[str]] = {}

        def walk(items: list[dict]) -> None:
            for c in items:
                if "code" in c:
                    out.setdefault(c.get("system", ""), set()).add(c["code"])
                walk(c.get("contains", []))

        walk(vs["expansion"]["contains"])
        return {s: frozenset(c) for s, c in out.items()}
    compose = vs.get("compose") or {}
    result: dict[str, set[str]] = {}
    for inc in compose.get("include", []):
        part: dict[str, set[str]] = {}
        system = inc.get("system")
        if system:
            if inc.get("filter"):
                return None
            if inc.get("concept"):
                part[system] = {c["code"] for c in inc["concept"]}
            else:
                codes = _code_system_codes(system)
                if codes is None:
                    vendored = _vendored_system(system)
                    if vendored is None:
                        return None
                    codes = vendored
                part[system] = set(codes)
        for imported_url in inc.get("valueSet", []):
            imported = expansion(imported_url, stack)
            if imported is None:
                return None
            if system:
                part = {s: c & imported.get(s, frozenset()) for s, c in part.items()}
            else:
                for s, c in imported.items():
                    part.setdefault(s, set()).update(c)
        for s, c in part.items():
            result.setdefault(s, set()).update(c)
    for exc in compose.get("exclude", []):
        system = exc.get("system")
        if system and exc.get("concept") and system in result:
            result[system] -= {c["code"] for c in exc["concept"]}
    return {s: frozenset(c) for s, c in result.items()}


def _vendored_system(system: str) -> frozenset[str] | None:
    """A whole code system, when some vendored required ValueSet includes all of it (best effort)."""
    found: set[str] = set()
    for exp in value_sets()["expansions"].values():
        if system in exp:
            found.update(exp[system])
    return frozenset(found) if found else None


def expansion(url: str, stack: tuple[str, ...] = ()) -> dict[str, frozenset[str]] | None:
    """{system: codes} for a ValueSet URL; None when unknown or not enforceable offline."""
    url = url.split("|", 1)[0]
    if url in _expansions:
        return _expansions[url]
    result: dict[str, frozenset[str]] | None = None
    if url in _registered_value_sets and url not in stack:
        result = _expand_registered(_registered_value_sets[url], stack + (url,))
    else:
        vendored = value_sets()["expansions"].get(url)
        if vendored is not None:
            result = {s: frozenset(c) for s, c in vendored.items()}
    _expansions[url] = result
    return result


def all_codes(url: str) -> frozenset[str] | None:
    codes = _all_codes.get(url)
    if codes is None:
        exp = expansion(url)
        if exp is None:
            return None
        codes = frozenset().union(*exp.values()) if exp else frozenset()
        _all_codes[url] = codes
    return codes


def known_code_systems() -> dict[str, str | None]:
    """The code systems whose codes validation checks in required bindings, {url: version or None}: the
    ones registered here (the IPT layer's, whole) and those the vendored R4 expansions cover. A system
    only some of whose codes a registered ValueSet lists (SNOMED CT, LOINC) is not one of them."""
    known: dict[str, str | None] = {}
    for expansion_by_system in value_sets()["expansions"].values():
        known.update((system, None) for system in expansion_by_system if system)
    for url, code_system in _registered_code_systems.items():
        known[url] = code_system.get("version")
    return known


def unenforceable_value_sets() -> dict[str, str]:
    return dict(value_sets()["unenforceable"])
