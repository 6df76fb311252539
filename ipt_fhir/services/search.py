"""FHIR search: the service the HTTP routes and conditional operations call.

Flow: registry-checked parsing (fhir/search/parser.py) -> SQL over the index tables
(store/search_sql.py) -> keyset page -> searchset Bundle spliced from the stored JSON bytes.
"""
from __future__ import annotations

import gzip
import json
import math
import re
from contextlib import nullcontext
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipt_fhir.fhir.dates import since_param
from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.outcome import FHIRError, bad_request, error, gone, not_found
from ipt_fhir.fhir.resource_types import REST_TYPES, require_rest_type
from ipt_fhir.fhir.search.parser import RESULT_PARAMS, Clause, Parser, UnknownParameter
from ipt_fhir.fhir.validation.compiler import Node, type_node
from ipt_fhir.security import audit, guard
from ipt_fhir.security.compartment import compartment_types, in_patient_compartment_type
from ipt_fhir.security.search_filter import restrict as restrict_by_access
from ipt_fhir.security.search_filter import restrict_nested
from ipt_fhir.store import pending_index
from ipt_fhir.store.search_sql import SqlBuilder, TextSql, Unsupported
from ipt_fhir.store.search_tables import uri_index
from ipt_fhir.store.tables import resource_table as R

from . import canonical_includes

_IGNORED_IN_CRITERIA = {"_format", "_pretty"}


def types_wanted(params: list[tuple[str, str]]) -> list[str]:
    """The types a search across types, $everything or $export is limited to (_type, comma-separated and
    repeatable), sorted, each once; [] without _type. An unknown one is a bad parameter value (400), not a
    missing endpoint."""
    wanted = {t.strip() for n, v in params if n == "_type" for t in v.split(",") if t.strip()}
    for t in sorted(wanted):
        if t not in REST_TYPES:
            raise bad_request(f"Unknown resource type '{t}' in _type", "_type", code="not-supported")
    return sorted(wanted)


def parse_criteria(resource_type: str, params: list[tuple[str, str]], base_url: str, *,
                   strict: bool) -> tuple[list[Clause], list[tuple[str, str]], list[tuple[str, str]]]:
    """-> (filter clauses, result parameters, ignored (name, reason)). strict: unknown -> 400."""
    parser = Parser(base_url)
    clauses: list[Clause] = []
    result: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    for name, value in given_params(params):
        if _is_result_param(name):
            result.append((name, value))
            continue
        parsed = _parse_criterion(parser, resource_type, name, value)
        if isinstance(parsed, Clause):
            clauses.append(parsed)
            continue
        if strict:
            raise _unsupported_criterion(name, parsed)
        ignored.append((name, parsed))
    _refuse_too_many_criteria(len(clauses))
    _refuse_too_many_ids(clauses)
    return clauses, result, ignored


MAX_CRITERIA = 100


def _refuse_too_many_criteria(count: int) -> None:
    """Each criterion is one more AND in the SQL, nested like the ORs of parser.MAX_VALUES_PER_PARAMETER."""
    if count > MAX_CRITERIA:
        raise FHIRError(400, [error("too-costly", f"The search has {count} criteria; this server takes at most "
                                                  f"{MAX_CRITERIA}")])


# `_id` values a search binds in all (parser.MAX_ID_VALUES per parameter; a chain binds its list once per
# target type, a system search once per resource type): SQLite takes 32,766 variables in one statement, the
# other criteria need a few.
MAX_BOUND_IDS = 30_000


def _refuse_too_many_ids(clauses: list[Clause]) -> None:
    def ids(clause: Clause) -> int:
        own = len(clause.values) if clause.kind == "id" and clause.modifier != "missing" else 0
        return own + sum(ids(c) for c in clause.inner)

    count = sum(ids(c) for c in clauses)
    if count > MAX_BOUND_IDS:
        raise FHIRError(400, [error("too-costly", f"The search binds {count} _id values (a chain's once per target "
                                                  f"type, a system search's once per resource type); this server "
                                                  f"takes at most {MAX_BOUND_IDS} (split the search, or name _type)")])


def given_params(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameters that carry a value, NUL refused. A parameter with an empty value is dropped before
    anything reads it: "Empty parameters are not an error - they are just ignored by the server"
    (search.html#errors), so it filters nothing, is no 400 and is in none of the Bundle's links."""
    for name, value in params:
        _refuse_nul(name, value)
    return [(name, value) for name, value in params if value != ""]


def _refuse_nul(name: str, value: str) -> None:
    if "\x00" in name or "\x00" in value:  # never a meaningful criterion; PostgreSQL cannot compare it
        raise bad_request(f"Search parameter {name!r} contains a NUL character", name, code="value")


def _is_result_param(name: str) -> bool:
    return name.split(":", 1)[0] in RESULT_PARAMS or name in _IGNORED_IN_CRITERIA


def _parse_criterion(parser: Parser, resource_type: str, name: str, value: str) -> Clause | str:
    """The clause of one filter parameter on `resource_type`, or the reason it cannot be applied there."""
    if name.partition(":")[0] == "_query":
        # This server defines no named queries, and an unrecognised one is never ignored: servers "SHALL
        # refuse to process a search request if they do not recognize the _query parameter value"
        # (search.html#query), whatever Prefer: handling says.
        raise FHIRError(400, [error("not-supported", f"_query={value} is not a query this server knows", name)])
    if name in ("_text", "_content", "_list", "_filter"):
        return f"{name} is not supported by this server"
    try:
        return parser.parse(resource_type, name, value)
    except UnknownParameter as exc:
        return exc.reason


def _unsupported_criterion(name: str, reason: str) -> FHIRError:
    return FHIRError(400, [error("not-supported", f"Unknown or unsupported search parameter {name}: {reason}", name)])


def where_conditions(resource_type: str, clauses: list[Clause], builder: SqlBuilder, r: Any = R) -> list[Any]:
    conds = [r.c.resource_type == resource_type, r.c.deleted.is_(False)]
    driver = None
    if clauses:
        best = min(clauses, key=builder.selectivity)
        if builder.selectivity(best) < 99:
            driver = best
    for c in clauses:
        conds.append(builder.condition(resource_type, c, r.c.resource_type, r.c.id, drive=c is driver))
    return conds


def find_ids(conn: Connection, resource_type: str, params: list[tuple[str, str]], base_url: str) -> list[str]:
    """Ids of current resources matching conditional-operation criteria. Every parameter must be understood."""
    require_rest_type(resource_type)
    clauses, result, _ = parse_criteria(resource_type, params, base_url, strict=True)
    extra = [n for n, _ in result if n not in _IGNORED_IN_CRITERIA]
    if extra:
        raise bad_request(f"{', '.join(extra)} cannot be used in conditional criteria", *extra)
    if not clauses:
        raise bad_request("Conditional criteria must contain at least one search parameter")
    pending_index.bring_current(conn)  # inside a create's or update's unit of work: rows may be pending
    try:
        tb = TextSql(conn.dialect.name, base_url)
        sql = f"SELECT r.id FROM resource r WHERE {tb.where(resource_type, clauses, 'r')} ORDER BY r.id"
        return [row[0] for row in conn.exec_driver_sql(sql, tb.params)]
    except Unsupported:
        pass
    builder = SqlBuilder(base_url, expand_valueset=_valueset_expander(conn))
    stmt = sa.select(R.c.id).where(*where_conditions(resource_type, clauses, builder)).order_by(R.c.id)
    return [row[0] for row in conn.execute(stmt)]


def _valueset_expander(conn: Connection):  # noqa: ANN202
    return expander(conn)


# ---------------------------------------------------------------- :in / :not-in value sets
# The server knows the vendored R4 required value sets plus every stored ValueSet whose
# expansion.contains enumerates its codes, or whose compose includes whole code systems or enumerated
# concepts of them, less enumerated exclusions (filters and nested value sets are not evaluated).
# A pair (system, None) stands for every code of the system.
Pairs = list[tuple[str | None, str | None]]
@lru_cache(maxsize=1)
def _vendored() -> dict[str, dict[str, list[str]]]:
    raw = resources.files("ipt_fhir.fhir").joinpath("definitions/validation-valuesets.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw)).get("expansions", {})


def _from_resource(vs: dict) -> Pairs | None:
    pairs: Pairs = []
    for c in (vs.get("expansion") or {}).get("contains") or []:
        if c.get("code"):
            pairs.append((c.get("system"), c["code"]))
    if pairs:
        return pairs
    compose = vs.get("compose") or {}
    excluded: set[tuple[str | None, str]] = set()
    for exc in compose.get("exclude") or []:
        if exc.get("valueSet") or exc.get("filter") or not exc.get("concept"):
            return None  # what it leaves out is not enumerated
        excluded.update((exc.get("system"), c["code"]) for c in exc["concept"] if c.get("code"))
    for inc in compose.get("include") or []:
        if inc.get("valueSet") or inc.get("filter") or not inc.get("system"):
            return None  # we do not evaluate filters or nested value sets
        if not inc.get("concept"):
            if any(system == inc["system"] for system, _ in excluded):
                return None  # a whole code system less some of its codes: its codes are not known here
            pairs.append((inc["system"], None))
        else:
            pairs.extend((inc["system"], c["code"]) for c in inc["concept"]
                         if c.get("code") and (inc["system"], c["code"]) not in excluded)
    return pairs


def expander(conn: Connection) -> Callable[[str], Pairs | None]:
    def expand(url: str) -> Pairs | None:
        canonical, _, _version = url.partition("|")
        row = None
        if "/" in canonical and not canonical.startswith("http"):  # ValueSet/id
            rt, _, rid = canonical.partition("/")
            row = conn.execute(sa.select(R.c.content).where(R.c.resource_type == rt, R.c.id == rid,
                                                            R.c.deleted.is_(False))).first()
        else:
            ids = sa.select(uri_index.c.resource_id).where(uri_index.c.resource_type == "ValueSet",
                                                          uri_index.c.param == "url", uri_index.c.value == canonical)
            row = conn.execute(sa.select(R.c.content).where(R.c.resource_type == "ValueSet", R.c.id.in_(ids),
                                                            R.c.deleted.is_(False)).limit(1)).first()
        if row is not None and row[0]:
            pairs = _from_resource(load_stored(row[0]))
            if pairs is not None:
                return pairs
        vend = _vendored().get(canonical)
        if vend is not None:
            return [(system, code) for system, codes in vend.items() for code in codes]
        return None

    return expand


# ---------------------------------------------------------------- CapabilityStatement


def search_params_for_capability(resource_type: str) -> list[dict]:
    from ipt_fhir.fhir.search.registry import registry

    out = [{"name": "_id", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id", "type": "token",
            "documentation": "Logical id of the resource"}]
    for code, p in sorted(registry().params(resource_type).items()):
        if code == "_id":
            continue
        doc = f"{p.type} on {_relative_expression(resource_type, p.expression)}" if p.expression else p.type
        if code == "phonetic":  # R4 leaves the algorithm to the server: say that there is none
            doc += " (matched as a string, a prefix of a name part: no phonetic algorithm)"
        if p.type == "reference" and p.targets:
            # a Reference(Any) lists ~145 types: named, they were cut off mid-word by the 400-character cap
            named = ", ".join(p.targets) if len(p.targets) <= 10 else f"any of {len(p.targets)} resource types"
            doc += f" (targets: {named}; chainable)"
        out.append({"name": code, "definition": p.url, "type": p.type, "documentation": doc[:400]})
    return out


def _relative_expression(resource_type: str, expression: str) -> str:
    """The FHIRPath relative to the resource, as the documentation of a type's parameter reads best
    (`Observation.code` -> `code`); still valid FHIRPath, the resource being the context."""
    return re.sub(rf"(?<![\w.]){re.escape(resource_type)}\.", "", expression)


def search_include_names(resource_type: str) -> tuple[list[str], list[str]]:
    from ipt_fhir.fhir.search.registry import registry

    reg = registry()
    includes = [f"{resource_type}:{code}" for code, p in sorted(reg.params(resource_type).items())
                if p.type == "reference"]
    if includes:
        includes.insert(0, "*")
    return includes, list(_revincludes().get(resource_type, ()))


@lru_cache(maxsize=1)
def _revincludes() -> dict[str, tuple[str, ...]]:
    from ipt_fhir.fhir.search.registry import registry

    reg = registry()
    out: dict[str, set[str]] = {}
    for src in reg.by_type:
        for code, p in reg.params(src).items():
            if p.type == "reference":
                for target in p.targets:
                    out.setdefault(target, set()).add(f"{src}:{code}")
    return {k: tuple(sorted(v)) for k, v in out.items()}


# ---------------------------------------------------------------- search (searchset Bundles)

import base64  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from ipt_fhir.fhir.jsonio import dump_json  # noqa: E402
from ipt_fhir.fhir.outcome import Issue, operation_outcome, warning  # noqa: E402
from ipt_fhir.fhir.search.parser import parse_positive_int  # noqa: E402
from ipt_fhir.fhir.search.registry import (  # noqa: E402
    SearchParam, patient_compartment, patient_compartment_params, registry,
)
from ipt_fhir.fhir.search.values import to_micros  # noqa: E402
from ipt_fhir.store.database import Database  # noqa: E402

MAX_INCLUDE_ITERATIONS = 4
MAX_INCLUDED = 5000
_LAST_UPDATED = SearchParam("_lastUpdated", "date", "Resource",
                            "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated", "Resource.meta.lastUpdated")


@dataclass
class Request:
    types: list[str]
    clauses: dict[str, list[Clause]]
    count: int
    sort: list[tuple[SearchParam | None, bool]]  # None = _id
    includes: list[tuple[str, str, str | None, bool]] = field(default_factory=list)  # (src, param|*, target, iterate)
    revincludes: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None
    total: str = "accurate"
    page: dict | None = None
    page_token: str | None = None  # the _page value this page answers, for its self link
    issues: list[Issue] = field(default_factory=list)
    extra_conditions: list[Any] = field(default_factory=list)
    link_params: list[tuple[str, str]] = field(default_factory=list)  # the parameters used (build_request)
    # $everything: also match what the compartment refers to (see _everything_refs).
    everything: "Everything | None" = None


@dataclass
class Everything:
    patient_id: str | None  # None: type level, the compartments of every patient in `patients`
    ref_types: list[str] | None  # types the referenced resources may have (None: any)
    ref_extra: dict[str, list[Clause]]  # access restrictions per referenced type
    since: list[Clause]  # _since as a type-independent _lastUpdated clause
    patients: list[Clause]  # type level: access restrictions on Patient
    # The compartment types whose references count, whatever _type returns: `_type=Practitioner` asks
    # for the practitioners the compartment refers to, not for an empty compartment's.
    sources: list[str] = field(default_factory=list)
    # start/end per type with a care date (_care_date_clauses): what a resource left out refers to is
    # left out too, unless an included one refers to it.
    care: dict[str, list[Clause]] = field(default_factory=dict)


def _settings_counts() -> tuple[int, int]:
    from ipt_fhir.settings import get_settings

    s = get_settings()
    return s.default_page_size, s.max_page_size


def _encode_page(keys: list, direction: str) -> str:
    raw = dump_json({"k": keys, "d": direction})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page(token: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = load_stored(raw)
        assert isinstance(data["k"], list) and data["d"] in ("n", "p")
        return data
    except Exception:  # noqa: BLE001
        raise bad_request("Invalid _page token", "_page") from None


def _page_keys(req: Request) -> list:
    """The sort values a _page token resumes after, checked against this search's sort keys (its sort
    parameters, then type and id): the token comes from the client, and a value of the wrong kind must
    be a 400, not an error from the database comparing it."""
    values = req.page["k"] if req.page else []
    kinds = [_sort_key_kind(p) for p, _ in req.sort] + ["text", "text"]
    if len(values) != len(kinds) or not all(map(_is_kind, values, kinds)):
        raise bad_request("The _page token does not belong to this search", "_page")
    return values


def _sort_key_kind(p: SearchParam | None) -> str:
    if p is None or p.code == "_lastUpdated":  # _id; lastUpdated sorts as text (search_sql.InstantText)
        return "text"
    return {"date": "integer", "number": "number", "quantity": "number"}.get(p.type, "text")


def _is_kind(value: object, kind: str) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float):  # a number sort key (REAL); Infinity and NaN are no value of a row
        return kind == "number" and math.isfinite(value)
    return -2**63 <= value < 2**63  # a larger int cannot be bound (SQLite INTEGER, PostgreSQL bigint)


def _parse_include(value: str, iterate: bool, rev: bool, name: str) -> tuple[str, str, str | None, bool]:
    parts = value.split(":")
    if value == "*":
        return ("*", "*", None, iterate)
    if len(parts) not in (2, 3) or parts[0] not in REST_TYPES:
        raise bad_request(f"Malformed {name}={value}: expected Type:parameter[:targetType]", name)
    src, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if code != "*":
        p = registry().get(src, code)
        if p is None or p.type != "reference":
            raise bad_request(f"{name}={value}: {code} is not a reference parameter of {src}", name)
    if target is not None and target not in REST_TYPES:
        raise bad_request(f"{name}={value}: unknown target type {target}", name)
    return (src, code, target, iterate)


def build_request(types: list[str], params: list[tuple[str, str]], base_url: str, strict: bool,
                  default_count: int, max_count: int, *, applied_by_caller: frozenset[str] = frozenset()) -> Request:
    """The search the parameters ask for. Its link_params are the parameters it actually applies, as the
    Bundle's links carry them (search.html: the self link encodes "the parameters that were actually used
    to process the search"); an ignored parameter is a warning in req.issues (strict: a 400) and is in no
    link, so that following a link never claims a filter that was not applied. applied_by_caller: names
    the caller applies itself (_type of a system search, _since of $everything), kept in the links."""
    req = Request(types=types, clauses={t: [] for t in types}, count=default_count, sort=[])
    parser = Parser(base_url)
    for name, value in given_params(params):
        if name in applied_by_caller:
            used: str | None = value
        elif _is_result_param(name):
            used = _apply_result_param(req, name, value, strict, max_count)
        else:
            used = _apply_criterion(req, parser, name, value, strict)
        if used is not None:
            req.link_params.append((name, used))
    _refuse_too_many_criteria(max(len(clauses) for clauses in req.clauses.values()) if req.clauses else 0)
    _refuse_too_many_ids([c for clauses in req.clauses.values() for c in clauses])  # a system search: per type
    for t in req.types:  # what chains and _has look into, restricted as the token's own searches are
        req.clauses[t] = restrict_nested(req.clauses[t], base_url)
    return req


def _apply_criterion(req: Request, parser: Parser, name: str, value: str, strict: bool) -> str | None:
    """Adds a filter parameter's clause for each searched type; -> its value, or None when ignored."""
    parsed = {t: _parse_criterion(parser, t, name, value) for t in req.types}
    lacking = [t for t, c in parsed.items() if not isinstance(c, Clause)]
    if not lacking:
        for t, c in parsed.items():
            req.clauses[t].append(c)  # type: ignore[arg-type]
        return value
    reason: str = parsed[lacking[0]]  # type: ignore[assignment]
    if len(lacking) < len(req.types):
        # Applied to some types only, it would return every resource of the others as if they matched:
        # never a lenient reading, so a 400 whatever Prefer: handling says (search.html#_type: the
        # parameters of a search across types "SHALL be common to all the types").
        raise _not_common(name, lacking, [t for t in req.types if t not in lacking], reason)
    if strict:
        raise _unsupported_criterion(name, reason)
    req.issues.append(warning("not-supported", f"Parameter {name} was ignored: {reason}", name))
    return None


def _not_common(name: str, lacking: list[str], having: list[str], reason: str) -> FHIRError:
    return bad_request(f"Search parameter {name} cannot be applied to {', '.join(lacking)} ({reason}); the "
                       "parameters of a search across types must be common to all of them: search the types "
                       f"that have it with _type={','.join(having)}", name)


# Result parameters this search has no use for: a type search has its type, and _since belongs to
# history and $everything (which apply it themselves).
_NOT_FOR_THIS_SEARCH = {
    "_type": "_type chooses the types of a search across types ([base]?_type=...), not of a type search",
    "_since": "_since applies to history and $everything, not to search",
}


def _apply_result_param(req: Request, name: str, value: str, strict: bool, max_count: int) -> str | None:
    """Applies one result parameter to req; -> its value as the links carry it, or None when it is in
    none of them (ignored; or _page, which each link sets for itself)."""
    base, _, mod = name.partition(":")
    if mod and base not in ("_include", "_revinclude"):  # the only result parameters with modifiers
        hint = " (descending order is _sort=-param)" if base == "_sort" else ""
        raise bad_request(f"Unknown modifier {name}: {base} takes none{hint}", name)
    if base == "_count":
        req.count = min(parse_positive_int(value, name), max_count)
        return str(req.count)  # the page size used, also when the client asked for more
    if base == "_sort":
        return _apply_sort(req, value, strict)
    if base in ("_include", "_revinclude"):
        if mod not in ("", "iterate", "recurse"):
            raise bad_request(f"Unknown modifier {name}", name)
        for v in value.split(","):
            spec = _parse_include(v, bool(mod), base == "_revinclude", name)
            (req.revincludes if base == "_revinclude" else req.includes).append(spec)
    elif base == "_summary":
        if value not in ("true", "text", "data", "count", "false"):
            raise bad_request(f"_summary must be true, text, data, count or false, got '{value}'", "_summary")
        req.summary = None if value == "false" else value
    elif base == "_elements":
        req.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif base == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise bad_request(f"_total must be none, estimate or accurate, got '{value}'", "_total")
        req.total = value
    elif base == "_page":
        req.page = _decode_page(value)
        req.page_token = value
        return None
    elif base in ("_contained", "_containedType"):
        # The defaults (_contained=false, _containedType=container) are what every search does;
        # searching inside contained resources is not supported and is reported, never ignored silently.
        allowed = ("true", "false", "both") if base == "_contained" else ("container", "contained")
        if value not in allowed:
            raise bad_request(f"{base} must be {', '.join(allowed)}, got '{value}'", base)
        if value not in ("false", "container"):
            return _ignore(req, base, f"{base}={value} is not supported: searches do not look inside contained "
                                      "resources", strict)
    elif base in _NOT_FOR_THIS_SEARCH:
        return _ignore(req, name, _NOT_FOR_THIS_SEARCH[base], strict)
    elif base not in ("_format", "_pretty"):
        return _ignore(req, name, f"Parameter {name} is not supported", strict)
    return value


def _common_sort_param(types: list[str], code: str) -> SearchParam | None:
    """Parameter `code` as the sort key of a search over `types`: the type's own for one type; for several
    (search.html#_type: the parameters common to all of them, `?_type=Patient,Practitioner&_sort=name`) the
    first type's, when each type has it with the same type and reads the same index rows (a reference alias
    reads its base parameter's rows, differently per type). None when it cannot be a sort key."""
    reg = registry()
    params = [reg.get(t, code) for t in types]
    first = params[0] if params else None
    if first is None or first.type == "composite" or any(q is None or q.type != first.type for q in params):
        return None
    if first.type == "reference" and len({reg.stored_reference(t, code) for t in types}) > 1:
        return None
    return first


def _apply_sort(req: Request, value: str, strict: bool) -> str | None:
    """-> the sort keys used, comma-separated, or None when none was (each unusable key is a warning)."""
    used = []
    for key in value.split(","):
        key = key.strip()
        desc = key.startswith("-")
        code = key.lstrip("-")
        if code == "_id":
            req.sort.append((None, desc))
        elif code == "_lastUpdated":
            req.sort.append((_LAST_UPDATED, desc))
        else:
            p = _common_sort_param(req.types, code)
            if p is None:
                if strict:  # a sort key this search cannot use is a bad request, as it always was
                    raise bad_request(f"Cannot sort by '{code}'", "_sort")
                _ignore(req, "_sort", f"Cannot sort by '{code}'", strict=False)
                continue
            req.sort.append((p, desc))
        used.append(key)
    return ",".join(used) or None


def _ignore(req: Request, name: str, msg: str, strict: bool) -> None:
    """A parameter this search cannot apply: 400 under strict handling, else a warning (and no link)."""
    if strict:
        raise FHIRError(400, [error("not-supported", msg, name)])
    req.issues.append(warning("not-supported", msg + "; ignored", name))


def _sort_columns(req: Request, builder: SqlBuilder, r: Any) -> list[tuple[Any, bool]]:
    cols: list[tuple[Any, bool]] = []
    for p, desc in req.sort:
        if p is None:
            cols.append((r.c.id, desc))
        else:
            cols.append((builder.sort_expr(r.c.resource_type, r.c.id, p, desc), desc))
    cols.append((r.c.resource_type, False))
    cols.append((r.c.id, False))
    return cols


def _keyset(cols: list[Any], descs: list[bool], values: list, forward: bool) -> Any:
    ors = []
    for i, (col, desc, val) in enumerate(zip(cols, descs, values)):
        greater = (not desc) if forward else desc
        cmp = col > val if greater else col < val
        ors.append(sa.and_(*[c == v for c, v in zip(cols[:i], values[:i])], cmp))
    return sa.or_(*ors)


def _where(req: Request, builder: SqlBuilder, r: Any) -> Any:
    per_type = []
    for t in req.types:
        per_type.append(sa.and_(*where_conditions(t, req.clauses[t], builder, r)))
    cond = per_type[0] if len(per_type) == 1 else sa.or_(*per_type)
    return sa.and_(cond, *req.extra_conditions)


def _text_where(req: Request, tb: TextSql) -> str:
    if req.extra_conditions:
        raise Unsupported("SQLAlchemy extra conditions")
    per_type = [_type_where(req, tb, t) for t in req.types]
    if req.everything is not None:
        per_type.append(_everything_refs(req, tb))
    return per_type[0] if len(per_type) == 1 else " OR ".join(f"({w})" for w in per_type)


def _text_from(req: Request, tb: TextSql) -> str:
    """The rows `resource r` a text statement filters with _text_where. Patient/[id]/$everything on
    PostgreSQL: only the few its scope allows, found through indexes first (_everything_scope). SQLite
    needs no scope: it runs each type's part of the condition through the primary key by itself (its OR
    optimisation), and was slower with one (32 against 22 ms a request beside 250 other patients)."""
    ev = req.everything
    if ev is None or ev.patient_id is None or not tb.pg:
        return "resource r"
    scope = _everything_scope(tb, ev.patient_id)
    return f"(SELECT * FROM resource e WHERE (e.resource_type, e.id) IN ({scope}) OFFSET 0) r"


def _type_where(req: Request, tb: TextSql, resource_type: str) -> str:
    where = tb.where(resource_type, req.clauses[resource_type], "r")
    ev = req.everything
    if ev is None or ev.patient_id is not None or resource_type == "Patient":
        return where  # an instance's compartment is a clause already (_compartment_clause)
    # Type-level $everything: a member of some patient's compartment, which no one search clause says.
    members = _and_text([f"c.resource_type = {tb.p(resource_type)}",
                         tb.in_("c.param", patient_compartment_params(resource_type)),
                         f"c.target_type = {tb.p('Patient')}", _everything_patient(tb, ev, "c.target_id"),
                         *tb.local_reference("c")])
    return _and_text([where, f"r.id IN (SELECT c.resource_id FROM search_reference c WHERE {members})"])


def _everything_scope(tb: TextSql, patient_id: str) -> str:
    """Patient/[id]/$everything: (type, id) of a superset of what it returns, read from the reference
    index by the patient's id: the patient, every resource with a reference to it (through any parameter)
    and what those refer to. The exact condition (_text_where) then tests only those rows: one patient's
    record and its neighbours. Alone, that condition (an OR over every compartment type and the
    references) was tested on every row of `resource`, for each page and count of every patient's record;
    the planners cannot see that it selects a handful. The fence around the scope (_text_from) keeps the
    condition out of the scope's own plan, so that PostgreSQL looks the rows up by primary key."""
    pid, patient = tb.p(patient_id), tb.p("Patient")
    near = (f"SELECT m.resource_type, m.resource_id FROM search_reference m "
            f"WHERE m.target_id = {pid} AND m.target_type = {patient} UNION SELECT {patient}, {pid}")
    return (f"{near} UNION SELECT n.target_type, n.target_id FROM search_reference n "
            f"WHERE n.target_id IS NOT NULL AND (n.resource_type, n.resource_id) IN ({near})")


def _everything_patient(tb: TextSql, ev: Everything, column: str) -> str:
    """The condition that `column` is the id of a patient whose compartment $everything returns: the one
    patient of the instance level, or at type level every current Patient the token may see."""
    if ev.patient_id is not None:
        return f"{column} = {tb.p(ev.patient_id)}"
    return f"{column} IN (SELECT p.id FROM resource p WHERE {tb.where('Patient', ev.patients, 'p')})"


def _everything_refs(req: Request, tb: TextSql) -> str:
    """$everything's "any resource referenced from those": resources that the patient or a compartment
    resource (of the searched types) refers to through a reference search parameter, in the same
    statement as the compartment so that one keyset order pages over both without duplicates."""
    ev = req.everything
    pairs = ["(" + _and_text([f"c.resource_type = {tb.p(t)}", tb.in_("c.param", patient_compartment_params(t)),
                              *_in_care_dates(tb, ev, t)]) + ")"
             for t in ev.sources if t != "Patient" and patient_compartment_params(t)]
    sources = []
    if "Patient" in ev.sources:
        sources.append(f"s.resource_type = {tb.p('Patient')} AND {_everything_patient(tb, ev, 's.resource_id')}")
    if pairs:
        members = _and_text([f"c.target_type = {tb.p('Patient')}", _everything_patient(tb, ev, "c.target_id"),
                             " OR ".join(pairs), *tb.local_reference("c")])
        sources.append(f"(s.resource_type, s.resource_id) IN (SELECT c.resource_type, c.resource_id FROM "
                       f"search_reference c WHERE {members})")
    if not sources:
        return "1=0"
    # Only what they refer to on this server: another server's Practitioner/1 is not ours. SQLite runs the
    # OR of the sources through an index each by itself; PostgreSQL scanned the whole reference index for
    # it, so there each source has a SELECT of its own.
    refs = " UNION ".join(
        "SELECT s.target_type, s.target_id FROM search_reference s WHERE "
        + _and_text(["s.target_id IS NOT NULL", source, *tb.local_reference("s")])
        for source in (sources if tb.pg else [" OR ".join(f"({source})" for source in sources)]))
    conds = [f"r.deleted = {tb.p(False)}", f"(r.resource_type, r.id) IN ({refs})"]
    if ev.ref_types is not None:
        plain = [t for t in ev.ref_types if not ev.ref_extra.get(t)]
        ors = [tb.in_("r.resource_type", plain)] if plain else []
        for t in ev.ref_types:
            if ev.ref_extra.get(t):
                ors.append(_and_text([f"r.resource_type = {tb.p(t)}",
                                      *[tb.condition(t, c, "r") for c in ev.ref_extra[t]]]))
        conds.append(" OR ".join(f"({o})" for o in ors) if ors else "1=0")
    conds += [tb.condition("", c, "r") for c in ev.since]
    return _and_text(conds)


def _in_care_dates(tb: TextSql, ev: Everything, resource_type: str) -> list[str]:
    """A source's start/end (Everything.care), as a condition on the search_reference row `c`: correlated
    with it, so only the compartment's own rows are dated (an uncorrelated `IN (SELECT ...)` dated every
    resource of the type on the server: 35 s a request beside 20,000 other patients' Observations)."""
    clauses = ev.care.get(resource_type)
    if not clauses:
        return []
    if tb.pg:
        # A probe of the member's own date rows. As a semi-join PostgreSQL hashed the whole date index for a
        # parameter it had few rows of (a care date of MedicationRequest, Claim, ...); OFFSET 0 keeps each
        # probe a correlated lookup.
        probes = []
        for clause in clauses:
            a = tb.alias()
            probes.append(f"EXISTS (SELECT 1 FROM search_date {a} WHERE {a}.resource_type = c.resource_type AND "
                          f"{a}.resource_id = c.resource_id AND "
                          f"{tb.param_is(a, 'search_date', resource_type, clause.param.code)} AND "
                          f"({tb.value_cond(clause, a)}) OFFSET 0)")
        return probes
    dated = _and_text(["d.resource_type = c.resource_type", "d.id = c.resource_id",
                       *[tb.condition(resource_type, c, "d") for c in clauses]])
    return [f"EXISTS (SELECT 1 FROM resource d WHERE {dated})"]


def _and_text(conds: list[str]) -> str:
    return " AND ".join(f"({c})" for c in conds)


def _needs_sort_fence(conn: Connection, req: Request) -> bool:
    """Whether a page's filter must run as a subquery of its own, apart from its ORDER BY ... LIMIT: on
    SQLite, when it sorts by a search parameter's value (a correlated subquery per match, so every match
    is read and sorted anyway). SQLite 3.40 drops matches from such pages when it drives the filter's
    `id IN (...)` with its SeekScan optimisation (which it picks when its statistics say the filter
    keeps a large share of the type): 162 of 165 Observations paged through `_sort=-date`. The
    subquery's `LIMIT -1 OFFSET 0` keeps it from being flattened into the sorted query."""
    return conn.dialect.name == "sqlite" and any(p is not None and p.code != _LAST_UPDATED.code for p, _ in req.sort)


def _run_page_text(conn: Connection, req: Request, base_url: str) -> tuple[list, bool, bool]:
    """_run_page as text SQL (the same statement shape); raises Unsupported for what TextSql lacks."""
    tb = TextSql(conn.dialect.name, base_url)
    sorts = [(tb.sort_expr("r", p, d) if p is not None else "r.id", d) for p, d in req.sort]
    sorts += [("r.resource_type", False), ("r.id", False)]
    where = _text_where(req, tb)
    keys = ", ".join(f"{e} AS k{i}" for i, (e, _) in enumerate(sorts))
    cols = ", ".join(f"q.k{i}" for i in range(len(sorts)))
    fence = " LIMIT -1 OFFSET 0" if _needs_sort_fence(conn, req) else ""
    sql = (f"SELECT q.resource_type, q.id, q.content, {cols} FROM (SELECT r.resource_type, r.id, r.content, {keys} "
           f"FROM {_text_from(req, tb)} WHERE {where}{fence}) q")
    descs = [d for _, d in sorts]
    forward = True
    if req.page:
        forward = req.page["d"] == "n"
        values = _page_keys(req)
        ors = []
        for i, (desc, val) in enumerate(zip(descs, values)):
            greater = (not desc) if forward else desc
            eqs = [f"q.k{j} = {tb.p(v)}" for j, v in enumerate(values[:i])]
            ors.append(" AND ".join([*eqs, f"q.k{i} {'>' if greater else '<'} {tb.p(val)}"]))
        sql += " WHERE " + " OR ".join(f"({o})" for o in ors)
    order = []
    for i, d in enumerate(descs):
        asc = (not d) if forward else d
        order.append(f"q.k{i} {'ASC' if asc else 'DESC'}")
    sql += f" ORDER BY {', '.join(order)} LIMIT {int(req.count) + 1}"
    rows = conn.exec_driver_sql(sql, tb.params).all()
    more = len(rows) > req.count
    rows = rows[:req.count]
    if forward:
        return rows, more, req.page is not None
    rows.reverse()
    return rows, True, more


def _run_page(conn: Connection, req: Request, builder: SqlBuilder) -> tuple[list, bool, bool]:
    """-> (rows (type, id, content, *keys), has_next, has_prev)."""
    try:
        return _run_page_text(conn, req, builder.base_url)
    except Unsupported:
        pass
    r = R.alias("r")
    sort_cols = _sort_columns(req, builder, r)
    labelled = [c.label(f"k{i}") for i, (c, _) in enumerate(sort_cols)]
    inner = sa.select(r.c.resource_type, r.c.id, r.c.content, *labelled).where(_where(req, builder, r))
    if _needs_sort_fence(conn, req):
        inner = inner.limit(-1).offset(0)
    inner = inner.subquery()
    keys = [inner.c[f"k{i}"] for i in range(len(sort_cols))]
    descs = [d for _, d in sort_cols]
    forward = True
    stmt = sa.select(inner.c.resource_type, inner.c.id, inner.c.content, *keys)
    if req.page:
        forward = req.page["d"] == "n"
        stmt = stmt.where(_keyset(keys, descs, _page_keys(req), forward))
    order = []
    for k, d in zip(keys, descs):
        asc = (not d) if forward else d
        order.append(k.asc() if asc else k.desc())
    rows = conn.execute(stmt.order_by(*order).limit(req.count + 1)).all()
    more = len(rows) > req.count
    rows = rows[:req.count]
    if forward:
        return rows, more, req.page is not None
    rows.reverse()
    return rows, True, more


def _count(conn: Connection, req: Request, builder: SqlBuilder) -> int:
    try:
        tb = TextSql(conn.dialect.name, builder.base_url)
        sql = f"SELECT count(*) FROM {_text_from(req, tb)} WHERE {_text_where(req, tb)}"
        return conn.exec_driver_sql(sql, tb.params).scalar_one()
    except Unsupported:
        pass
    r = R.alias("r")
    return conn.execute(sa.select(sa.func.count()).select_from(r).where(_where(req, builder, r))).scalar_one()


def _fetch(conn: Connection, pairs: list[tuple[str, str]]) -> list[tuple[str, str, bytes]]:
    by_type: dict[str, list[str]] = {}
    for t, i in pairs:
        by_type.setdefault(t, []).append(i)
    out = []
    for t, ids in by_type.items():
        for chunk in range(0, len(ids), 500):
            out.extend(conn.execute(sa.select(R.c.resource_type, R.c.id, R.c.content).where(
                R.c.resource_type == t, R.c.id.in_(ids[chunk:chunk + 500]), R.c.deleted.is_(False))).all())
    return out


def _reference_join(tb: TextSql, rt: str, ids: list[str], *, revinclude: bool) -> str:
    """The live resources at the other end of the local references (search_reference `t`) from the `rt`
    resources `ids` (_include), or to them (_revinclude): SELECT x.resource_type, x.id, x.content."""
    near, far = ("t.resource_type", "t.resource_id"), ("t.target_type", "t.target_id")
    if revinclude:
        near, far = far, near
    sql = (f"SELECT x.resource_type, x.id, x.content FROM search_reference t JOIN resource x "
           f"ON x.resource_type = {far[0]} AND x.id = {far[1]} "
           f"WHERE {near[0]} = {tb.p(rt)} AND {tb.in_(near[1], ids)} AND x.deleted = {tb.p(False)}")
    return sql + "".join(f" AND ({cond})" for cond in tb.local_reference("t"))


def _includes(conn: Connection, req: Request, matched: list[tuple[str, str]],
              base_url: str) -> list[tuple[str, str, bytes]]:
    """_include / _revinclude (and :iterate): each spec is one join of the reference index with the
    resource table, over the references local to `base_url` (a reference to another server's Patient/1
    neither includes ours nor is revincluded by it), plus the canonical references it names
    (canonical_includes.py); entries already in the Bundle are not repeated."""
    if not req.includes and not req.revincludes:
        return []
    seen = set(matched)
    included: list[tuple[str, str, bytes]] = []
    frontier = list(matched)
    dialect = conn.dialect.name
    # One round past the limit, which only asks whether the references go on (then a warning says so).
    for round_no in range(MAX_INCLUDE_ITERATIONS + 2):
        by_type: dict[str, list[str]] = {}
        for rt, rid in frontier:
            by_type.setdefault(rt, []).append(rid)
        found: list[tuple[str, str, bytes]] = []
        for src, code, target, iterate in req.includes:
            if round_no > 0 and not iterate:
                continue
            for rt, ids in by_type.items():
                if src not in ("*", rt):
                    continue
                tb = TextSql(dialect, base_url)
                sql = _reference_join(tb, rt, ids, revinclude=False)
                if code != "*":
                    sql += f" AND {tb.param_is('t', 'search_reference', rt, code)}"
                if target:
                    sql += f" AND t.target_type = {tb.p(target)}"
                found.extend(tuple(x) for x in conn.exec_driver_sql(sql, tb.params))
                found.extend(canonical_includes.included(conn, rt, ids, code, target, MAX_INCLUDED))
        for src, code, target, iterate in req.revincludes:
            if round_no > 0 and not iterate:
                continue
            for rt, ids in by_type.items():
                if target and target != rt:
                    continue
                tb = TextSql(dialect, base_url)
                sql = _reference_join(tb, rt, ids, revinclude=True)
                if src != "*":
                    sql += f" AND t.resource_type = {tb.p(src)}"
                if code != "*":
                    sql += f" AND {tb.param_is('t', 'search_reference', src, code)}"
                found.extend(tuple(x) for x in conn.exec_driver_sql(sql, tb.params))
                found.extend(canonical_includes.revincluded(conn, rt, ids, src, code, MAX_INCLUDED))
        new, dropped = [], False
        for rt, rid, content in found:
            if (rt, rid) not in seen:
                if len(included) + len(new) >= MAX_INCLUDED:
                    dropped = True
                    continue
                seen.add((rt, rid))
                new.append((rt, rid, content))
        if new and round_no > MAX_INCLUDE_ITERATIONS:  # the references go on past the last round made
            req.issues.append(warning("too-costly", f"_include:iterate and _revinclude:iterate stop after "
                                                    f"{MAX_INCLUDE_ITERATIONS} iterations; resources further along "
                                                    "the chain of references are left out"))
            break
        included.extend(new)
        if dropped:
            req.issues.append(warning("too-costly", f"Included resources stop at {MAX_INCLUDED}; others the "
                                                    "_include and _revinclude parameters name are left out"))
        if not new or dropped:
            break
        frontier = [(a, b) for a, b, _ in new]
    return included


# ---- _summary / _elements


def _top_level(resource_type: str, elements: list[str]) -> list[str]:
    """_elements as the top-level element names of one `resource_type` (search.html#elements names base
    elements): `name` as written; `Patient.name`, as some clients and servers qualify them (in a search
    over several types, naming each type's), for a Patient only; a path below one (`name.family`) as its
    top-level element, whole. Either used to keep nothing but id and meta."""
    out = []
    for element in elements:
        head, _, rest = element.partition(".")
        if rest and head[:1].isupper():  # qualified by a resource type
            if head != resource_type:
                continue
            head = rest.partition(".")[0]
        out.append(head)
    return out


def _subset(content: bytes, resource_type: str, summary: str | None, elements: list[str] | None) -> bytes:
    doc = load_stored(content)
    # the top-level elements of min cardinality 1, which _summary=text and _elements keep
    mandatory = [e.name for e in type_node(resource_type).required] if summary == "text" or elements is not None else []

    def keep_names(names: list[str]) -> dict:
        keep = set(names) | {"resourceType", "id", "meta"}
        out = {}
        for k, v in doc.items():
            base = k[1:] if k.startswith("_") else k
            if base in keep or any(base.startswith(n) and base[len(n):][:1].isupper() for n in names):
                out[k] = v
        return out

    if summary == "data":
        out = {k: v for k, v in doc.items() if k not in ("text",)}
    elif summary == "text":
        out = keep_names(["text"] + mandatory)
    elif summary == "true":
        out = {"resourceType": resource_type, **_summary_of(doc, type_node(resource_type))}
    elif elements is not None:
        out = keep_names(_top_level(resource_type, elements) + mandatory)
    else:
        return content
    meta = dict(out.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" for t in tags):
        tags.append({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
                     "display": "subsetted"})
    meta["tag"] = tags
    out["meta"] = meta
    return dump_json(out)


# Data types _summary=true keeps whole instead of filtering them by their own isSummary flags, which would
# take them apart: an Extension's url and value are not flagged (a summary modifierExtension would come out
# empty), nor are a Narrative's status and div; Meta is the server's own (SUBSETTED is added to it) and its
# id and extension are not flagged either. A resource inside a resource (contained, Bundle.entry.resource,
# Bundle.entry.response.outcome) is kept whole as well: _summary_of stops at Resource-typed props and at
# resource nodes.
_SUMMARY_KEPT_WHOLE = frozenset({"Meta", "Narrative", "Extension"})


def _summary_of(obj: dict, node: Node) -> dict:
    """`obj` (an instance of `node`, a compiled type or backbone element) with only its isSummary elements,
    at every depth (search.html#summary: "all supported elements that are marked as summary"); a
    primitive's `_name` companion goes with it."""
    props = node.props
    out = {}
    for key, value in obj.items():
        prop = props.get(key[1:] if key[:1] == "_" else key)
        if prop is None or not prop.elem.summary:
            continue
        inner = prop.node  # None for primitives and Resource-typed props (kept whole)
        if (inner is not None and key[:1] != "_" and not inner.is_resource
                and inner.name not in _SUMMARY_KEPT_WHOLE):
            if type(value) is dict:
                value = _summary_of(value, inner)
            elif type(value) is list:
                value = [v for v in (_summary_of(v, inner) if type(v) is dict else v for v in value) if v != {}]
            if not value:  # nothing of it is summary: leave it out rather than send an empty object
                continue
        out[key] = value
    return out


def subset_read(content: bytes, resource_type: str, params: list[tuple[str, str]]) -> bytes:
    """_summary and _elements on read and vread (http://hl7.org/fhir/R4/http.html#read: the general
    parameters apply to every interaction that returns a resource), marked SUBSETTED like search results."""
    summary = elements = None
    for name, value in params:
        if value == "":  # ignored, as in a search (search.html#errors)
            continue
        if name == "_summary":
            if value not in ("true", "text", "data", "count", "false"):
                raise bad_request(f"_summary must be true, text, data, count or false, got '{value}'", "_summary")
            summary = value if value in ("true", "text", "data") else None
        elif name == "_elements":
            elements = [e.strip() for e in value.split(",") if e.strip()]
    if summary is None and elements is None:
        return content
    return _subset(content, resource_type, summary, elements)


def _bundle(base_url: str, self_url: str, links: list[tuple[str, str]], total: int | None,
            entries: list[tuple[str, str, bytes, str]], issues: list[Issue]) -> bytes:
    head: dict = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                  "meta": {"lastUpdated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"},
                  "type": "searchset"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": "self", "url": self_url}] + [{"relation": r, "url": u} for r, u in links]
    parts = []
    if issues:
        parts.append(b'{"resource":' + dump_json(operation_outcome(issues)) + b',"search":{"mode":"outcome"}}')
    for rt, rid, content, mode in entries:
        parts.append(b'{"fullUrl":' + dump_json(f"{base_url}/{rt}/{rid}") + b',"resource":' + content
                     + b',"search":{"mode":"' + mode.encode() + b'"}}')
    body = dump_json(head)
    if not parts:
        return body
    return body[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


def _execute(db: Database, req: Request, *, base_url: str, request_url: str, link_path: str,
             conn: Connection | None = None) -> bytes:
    # `conn`: search inside the caller's unit of work (GET entries of a transaction see its writes)
    with (nullcontext(conn) if conn is not None else db.read()) as conn:
        pending_index.bring_current(conn)  # a caller's unit of work may have rows pending
        if db.dialect == "postgresql":
            # psycopg prepares repeated statements; a generic plan ignores how selective this patient or
            # code is and can scan a whole index. Search values matter, so always plan with them.
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        builder = SqlBuilder(base_url, expand_valueset=expander(conn))
        if req.summary == "count" or req.count == 0:
            # _summary=count asks for the count itself: a _total=none beside it cannot take it away
            # (it would leave an answer with nothing in it); _count=0 with _total=none counts nothing.
            total = _count(conn, req, builder) if req.total != "none" or req.summary == "count" else None
            return _bundle(base_url, _self_url(req, base_url, link_path), [], total, [], req.issues)
        rows, has_next, has_prev = _run_page(conn, req, builder)
        total = None
        if req.total != "none":
            if req.page is None and not has_next:
                total = len(rows)
            else:
                total = _count(conn, req, builder)
        matched = [(row[0], row[1]) for row in rows]
        included = guard.filter_rows(_includes(conn, req, matched, base_url))
        returned = guard.filter_rows(rows)
        # counting only references to this server's patients: an Observation about
        # http://other.org/fhir/Patient/1 is no access to the data of our Patient/1
        audit.note_search(None, request_url.partition("?")[2], audit.patients_in(
            conn, [(r[0], r[1]) for r in returned] + [(a, b) for a, b, _ in included]))
    entries = []
    for row in returned:
        content = row[2]
        if req.summary or req.elements is not None:
            content = _subset(content, row[0], req.summary, req.elements)
        entries.append((row[0], row[1], content, "match"))
    entries += [(rt, rid, content, "include") for rt, rid, content in _as_included(req, included)]
    links = [("first", _link(req, base_url, link_path))]
    if rows and has_prev:
        links.append(("previous", _link(req, base_url, link_path, _encode_page(list(rows[0][3:]), "p"))))
    if rows and has_next:
        links.append(("next", _link(req, base_url, link_path, _encode_page(list(rows[-1][3:]), "n"))))
    return _bundle(base_url, _self_url(req, base_url, link_path), links, total, entries, req.issues)


def _as_included(req: Request, included: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
    """Included resources as a Bundle carries them: "The list of elements does not apply to included
    resources" (search.html#elements); _summary does."""
    if not req.summary:
        return included
    return [(rt, rid, _subset(content, rt, req.summary, None)) for rt, rid, content in included]


def _link(req: Request, base_url: str, link_path: str, page: str | None = None) -> str:
    """A GET of this search's parameters as used (build_request), on the page `page` (None: the first)."""
    q = urlencode(req.link_params + ([("_page", page)] if page else []))
    return f"{base_url}{link_path}" + (f"?{q}" if q else "")


def _self_url(req: Request, base_url: str, link_path: str) -> str:
    """The page's self link: the parameters used to process it, encoded like the other links, also for
    POST _search (its body's parameters as a GET); a later page's self link is the link that led to it."""
    return _link(req, base_url, link_path, req.page_token)


def search(db: Database, resource_type: str | None, params: list[tuple[str, str]], *, base_url: str,
           request_url: str, strict: bool = False, compartment: tuple[str, str] | None = None,
           default_count: int | None = None, max_count: int | None = None,
           conn: Connection | None = None) -> bytes:
    """Type search (resource_type), system search (None; `_type` limits the types) or Patient compartment
    search; returns the searchset Bundle as JSON bytes. With `conn`, runs inside that unit of work.
    `request_url` (the URL as requested) goes to the audit record; the links encode the parameters used."""
    base_url = base_url.rstrip("/")
    dc, mc = _settings_counts()
    default_count = default_count or dc
    max_count = max_count or mc
    if resource_type is not None:
        require_rest_type(resource_type)
        types = [resource_type]
        link_path = f"/{resource_type}"
    elif compartment is not None:  # [base]/Patient/[id]/*: the types of the compartment
        types = types_wanted(params) or sorted(compartment_types())
        link_path = "/*"
    else:
        types = types_wanted(params) or sorted(REST_TYPES)
        link_path = ""
    types, restricted = restrict_by_access(types, base_url, compartment_patient=compartment[1] if compartment else None)
    applied_here = frozenset({"_type"} if resource_type is None else ())
    req = build_request(types, params, base_url, strict, default_count, max_count, applied_by_caller=applied_here)
    for t, extra in restricted.items():
        req.clauses[t].extend(extra)
    if compartment is not None:
        comp_type, comp_id = compartment
        if comp_type != "Patient":
            raise not_found(f"Compartment {comp_type} is not supported; only Patient")
        link_path = f"/Patient/{comp_id}{link_path}"
        for t in types:
            req.clauses[t].append(_compartment_clause(t, comp_id))
    return _execute(db, req, base_url=base_url, request_url=request_url, link_path=link_path, conn=conn)


def _compartment_clause(resource_type: str, patient_id: str) -> Clause:
    if resource_type == "Patient":
        # The patient itself, and the patients whose link names it (CompartmentDefinition patient: Patient
        # is in by `link`: "all the records associated with the linked patient are in the compartment")
        link = registry().get("Patient", "link")
        return Clause("or", "compartment", inner=[
            Clause("id", "_id", values=[patient_id]),
            Clause("param", "link", param=link, values=[f"Patient/{patient_id}"])])
    if not patient_compartment().get(resource_type):
        raise bad_request(f"{resource_type} is not in the Patient compartment")
    inner = []
    for code in patient_compartment_params(resource_type):  # `patient` read as its base `subject`: once
        p = registry().get(resource_type, code)
        if p is not None and p.type == "reference":
            inner.append(Clause("param", code, param=p, values=[f"Patient/{patient_id}"]))
    return Clause("or", "compartment", inner=inner)


def everything(db: Database, patient_id: str | None, params: list[tuple[str, str]], *, base_url: str,
               request_url: str, strict: bool = False) -> bytes:
    """Patient/[id]/$everything: the patient, its compartment and the resources those refer to
    (start, end, _since, _type, _count, paging). patient_id None: Patient/$everything, the same for every
    patient the token may see (OperationDefinition Patient-everything, type=true), paged as one search."""
    base_url = base_url.rstrip("/")
    params = given_params(params)
    dc, mc = _settings_counts()
    if patient_id is not None:
        _require_current_patient(db, patient_id)
    wanted = types_wanted(params)
    types = [t for t in wanted if in_patient_compartment_type(t)] if wanted else \
        [t for t in sorted(compartment_types()) if t not in NOT_THE_RECORD]
    types, restricted = restrict_by_access(types, base_url, compartment_patient=patient_id)
    allowed = [(n, v) for n, v in params if n in ("_count", "_page", "_since", "_type", "_format", "_pretty",
                                                  "_elements", "_summary", "_total", "start", "end")]
    care = _care_date_clauses(Parser(base_url), params)
    req = build_request(types, allowed, base_url, strict, dc, mc,
                        applied_by_caller=frozenset({"_type", "_since", "start", "end"}))
    for n, _ in params:
        if (n, _) not in allowed:
            if strict:
                raise FHIRError(400, [error("not-supported", f"Parameter {n} is not supported by $everything", n)])
            req.issues.append(warning("not-supported", f"Parameter {n} is not supported by $everything; ignored", n))
    for t in types:
        membership = [_compartment_clause(t, patient_id)] if patient_id is not None else []
        req.clauses[t] = membership + restricted.get(t, [])
    ref_types, ref_extra = restrict_by_access(wanted or sorted(REST_TYPES), base_url,
                                              compartment_patient=patient_id)
    since = _since_clauses(params)
    for t in types:
        req.clauses[t] += since + care.get(t, [])
    everything_all = not wanted and not ref_extra and len(ref_types) == len(REST_TYPES)
    # type level: whose compartments, as the token may see Patients (instance level: the one patient)
    patients = [] if patient_id is not None else restrict_by_access(["Patient"], base_url)[1].get("Patient", [])
    # the types whose rows place a resource in a compartment: without _type, the types searched already
    sources = types if not wanted else restrict_by_access(sorted(compartment_types()), base_url,
                                                          compartment_patient=patient_id)[0]
    sources = [t for t in sources if t not in NOT_THE_RECORD]
    req.everything = Everything(patient_id, None if everything_all else list(ref_types), ref_extra, since,
                                patients, sources, care)
    link_path = f"/Patient/{patient_id}/$everything" if patient_id is not None else "/Patient/$everything"
    return _execute(db, req, base_url=base_url, request_url=request_url, link_path=link_path)


def _require_current_patient(db: Database, patient_id: str) -> None:
    with db.read() as conn:
        found = conn.execute(sa.select(R.c.deleted).where(R.c.resource_type == "Patient",
                                                          R.c.id == patient_id)).first()
    if found is None:
        raise not_found(f"Patient/{patient_id} is not known")
    if found[0]:  # as a read of the patient answers (http.html#delete)
        raise gone(f"Patient/{patient_id} was deleted")


CLINICAL_DATE = "http://hl7.org/fhir/SearchParameter/clinical-date"

# Compartment members that are no part of the patient's record: an AuditEvent names whatever a request
# touched (a search's every patient), so what it refers to brought other patients' records into one
# patient's $everything, and each call's own audit grew the next. Returned only when _type asks for them,
# and never followed to what they refer to.
NOT_THE_RECORD = frozenset({"AuditEvent"})


# Care dates of Patient compartment types whose `date` is not the clinical-date parameter: when the care was
# given, ordered, billed or dispensed (not when the record was written). Without them a type went unfiltered
# and, worse, its members dragged in what they refer to: every Claim of a patient brought every Encounter.
OTHER_CARE_DATES = {
    "Appointment": "date", "Claim": "created", "ClaimResponse": "created", "Communication": "sent",
    "DeviceRequest": "event-date", "DocumentReference": "period", "ExplanationOfBenefit": "created",
    "ImagingStudy": "started", "Invoice": "date", "Media": "created", "MedicationAdministration": "effective-time",
    "MedicationDispense": "whenhandedover", "MedicationRequest": "authoredon", "MedicationStatement": "effective",
    "NutritionOrder": "datetime", "QuestionnaireResponse": "authored", "ServiceRequest": "authored",
    "Specimen": "collected", "VisionPrescription": "datewritten",
}


@lru_cache(maxsize=1)
def _care_dated_types() -> tuple[tuple[str, str], ...]:
    """(type, its care-date parameter) of the Patient compartment types that have one: `date` where that
    is the spec's clinical-date parameter, else OTHER_CARE_DATES."""
    reg = registry()
    out = []
    for t in sorted(compartment_types()):
        date = reg.get(t, "date")
        code = "date" if date is not None and date.url == CLINICAL_DATE else OTHER_CARE_DATES.get(t)
        if code is not None and (p := reg.get(t, code)) is not None and p.type == "date":
            out.append((t, code))
    return tuple(out)


def _care_date_clauses(parser: Parser, params: list[tuple[str, str]]) -> dict[str, list[Clause]]:
    """$everything's start and end: "care dates, not record currency dates" (OperationDefinition
    Patient-everything), inclusive, to the precision given. A care date is what the spec's clinical-date
    search parameter reads (Encounter.period, Observation.effective, CarePlan.period, Procedure.performed,
    ...), or for other types the date of the care they order, bill or record (OTHER_CARE_DATES:
    MedicationRequest.authoredOn, Claim.created, Appointment.start, ...): a resource of those types is
    returned when its care date overlaps [start, end], as `date=ge[start]&date=le[end]` would find it,
    and not when it has none. The types left (Patient, Condition, Goal, Coverage, ...) have no single
    care date and are not filtered. This decides compartment membership: what a member in range refers to
    is returned whatever its own date (an Observation's Encounter), what only members out of range refer
    to is not. -> the clauses per filtered type."""
    care: dict[str, list[Clause]] = {}
    dated = _care_dated_types()
    for name, prefix in (("start", "ge"), ("end", "le")):
        values = [v for n, v in params if n == name]
        if len(values) > 1:
            raise bad_request(f"$everything takes one {name}, found {len(values)}", name)
        if not values:
            continue
        try:  # the search date grammar; a prefix of the caller's own ("gege2025") is no date either
            clauses = [parser.parse(t, code, prefix + values[0]) for t, code in dated]
        except FHIRError:
            clauses = None
        if clauses is None or any(len(c.values) != 1 for c in clauses):  # a list ("2025,2019") is not one date
            raise bad_request(f"{name} must be a date (YYYY, YYYY-MM or YYYY-MM-DD) or a dateTime, "
                              f"found '{values[0]}'", name)
        for (t, _), clause in zip(dated, clauses):
            care.setdefault(t, []).append(clause)
    return care


def _since_clauses(params: list[tuple[str, str]]) -> list[Clause]:
    since: list[Clause] = []
    for n, v in params:
        if n == "_since":
            when = since_param(v)
            # lastUpdated >= _since: the resource row's last_updated ([low, high) = [t, t + 1 us)).
            t = to_micros(when)
            since.append(Clause("param", "_lastUpdated", param=_LAST_UPDATED, values=[("ge", t, t)]))
    return since
