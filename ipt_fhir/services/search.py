"""FHIR search: the service the HTTP routes and conditional operations call.

Flow: registry-checked parsing (fhir/search/parser.py) -> SQL over the index tables
(store/search_sql.py) -> keyset page -> searchset Bundle spliced from the stored JSON bytes.
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.outcome import FHIRError, bad_request, error, not_found
from ipt_fhir.fhir.resource_types import RESOURCE_TYPES
from ipt_fhir.fhir.search.parser import RESULT_PARAMS, Clause, Parser, UnknownParameter
from ipt_fhir.store.search_sql import SqlBuilder
from ipt_fhir.store.search_tables import uri_index
from ipt_fhir.store.tables import resource_table as R

_IGNORED_IN_CRITERIA = {"_format", "_pretty"}


def check_type(resource_type: str) -> None:
    if resource_type not in RESOURCE_TYPES:
        raise not_found(f"Unknown resource type '{resource_type}'")


def parse_criteria(resource_type: str, params: list[tuple[str, str]], base_url: str, *,
                   strict: bool) -> tuple[list[Clause], list[tuple[str, str]], list[tuple[str, str]]]:
    """-> (filter clauses, result parameters, ignored (name, reason)). strict: unknown -> 400."""
    parser = Parser(base_url)
    clauses: list[Clause] = []
    result: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    for name, value in params:
        if name in RESULT_PARAMS or name in _IGNORED_IN_CRITERIA:
            result.append((name, value))
            continue
        if name in ("_text", "_content", "_list", "_filter", "_query"):
            reason = f"{name} is not supported by this server"
        else:
            try:
                clauses.append(parser.parse(resource_type, name, value))
                continue
            except UnknownParameter as exc:
                reason = exc.reason
        if strict:
            raise FHIRError(400, [error("not-supported", f"Unknown or unsupported search parameter {name}: {reason}", name)])
        ignored.append((name, reason))
    return clauses, result, ignored


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
    check_type(resource_type)
    clauses, result, _ = parse_criteria(resource_type, params, base_url, strict=True)
    extra = [n for n, _ in result if n not in _IGNORED_IN_CRITERIA]
    if extra:
        raise bad_request(f"{', '.join(extra)} cannot be used in conditional criteria", *extra)
    if not clauses:
        raise bad_request("Conditional criteria must contain at least one search parameter")
    builder = SqlBuilder(base_url, expand_valueset=_valueset_expander(conn))
    stmt = sa.select(R.c.id).where(*where_conditions(resource_type, clauses, builder)).order_by(R.c.id)
    return [row[0] for row in conn.execute(stmt)]


def _valueset_expander(conn: Connection):  # noqa: ANN202
    return expander(conn)


# ---------------------------------------------------------------- :in / :not-in value sets
# The server knows the vendored R4 required value sets plus every stored ValueSet whose
# expansion.contains or compose.include.concept enumerates its codes (filters are not evaluated).
Pairs = list[tuple[str | None, str]]
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
    for inc in (vs.get("compose") or {}).get("include") or []:
        if inc.get("valueSet") or inc.get("filter") or not inc.get("concept"):
            return None  # we do not evaluate filters or nested value sets
        pairs.extend((inc.get("system"), c["code"]) for c in inc["concept"] if c.get("code"))
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
        doc = f"{p.type} on {p.expression}" if p.expression else p.type
        if p.type == "reference" and p.targets:
            doc += f" (targets: {', '.join(p.targets)}; chainable)"
        out.append({"name": code, "definition": p.url, "type": p.type, "documentation": doc[:400]})
    return out


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
