"""SQL over the search index tables: parsed clauses -> SQLAlchemy conditions, sort keys, includes.

Every clause becomes a condition on the outer `resource` row. The most selective positive clause
drives the query as `id IN (index lookup)`; the others are correlated EXISTS probes on the
(resource_type, resource_id, param) index, which both SQLite and PostgreSQL plan as cheap lookups.

Two kinds of parameter have no index rows of their own: `_lastUpdated` is the resource row's
`last_updated` column (indexed with resource_type), and a reference alias such as `patient`
(`subject.where(resolve() is Patient)`) reads its base parameter's rows with that target type.
"""
from __future__ import annotations

import operator
import time
from datetime import datetime, timezone
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from ipt_fhir.fhir.outcome import bad_request
from ipt_fhir.fhir.search.parser import ANY, Clause
from ipt_fhir.fhir.search.registry import registry
from ipt_fhir.fhir.search.values import MAX_TIME, MIN_TIME, STRING_INDEX_LENGTH, from_micros, normalise

from .database import sqlite_datetime
from .number_search import HIGH, LOW, range_terms
from .search_tables import INDEX_TABLES, composite_index, reference_index, string_index, token_index, uri_index

# number_search's operators as SQLAlchemy builds them
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "<>": operator.ne}

ValueSetExpander = Callable[[str], "list[tuple[str | None, str | None]] | None"]  # (system, None): all its codes


def _next_prefix(q: str) -> str:
    """Smallest string greater than every string starting with q."""
    return q[:-1] + chr(ord(q[-1]) + 1) if q else "\U0010ffff"


def _below(q: str) -> tuple[str, str]:
    """uri :below by path segment, like :above: the value itself, or [lo, hi) for everything under it
    (url:below=http://acme.org/fhir matches http://acme.org/fhir/ValueSet/1, not http://acme.org/fhirx)."""
    lo = q.rstrip("/") + "/"
    return lo, _next_prefix(lo)


def _like_escape(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


LAST_UPDATED = "_lastUpdated"
_FIRST_INSTANT, _LAST_INSTANT = datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc)


def instant_range(prefix: str, ql: int, qh: int, now_us: int) -> tuple[int | None, int | None, bool]:
    """(lower, upper, negate): a microsecond instant t matches `prefix` against the query range [ql, qh)
    exactly when lower <= t < upper (None: unbounded), or when it does not for `ne`. These are
    date_cond's range rules for the one-microsecond range [t, t + 1) of resource.last_updated."""
    if prefix in ("eq", "ne"):
        return ql, qh, prefix == "ne"
    if prefix in ("gt", "sa"):
        return qh, None, False
    if prefix == "ge":
        return ql, None, False
    if prefix in ("lt", "eb"):
        return None, ql, False
    if prefix == "le":
        return None, qh, False
    if prefix == "ap":
        mid = (ql + qh) // 2
        gap = abs(now_us - mid) // 10
        return ql - gap, qh + gap, False
    raise bad_request(f"Unknown prefix {prefix}")


def instant(us: int) -> datetime:
    """A bound in microseconds as a UTC datetime, clamped to what datetime (and the column) can hold."""
    try:
        return from_micros(us)
    except OverflowError:
        return _FIRST_INSTANT if us < 0 else _LAST_INSTANT


_PG_INSTANT_TEXT = "YYYY-MM-DD HH24:MI:SS.US"  # to_char's spelling of SQLite's DateTime text


def reaches_canonical(resource_type: str, param: Any) -> bool:
    """Whether a reference parameter may hold values named by the target's url (canonical, uri:
    path_types.names_by_url, as _include reads them): its chains and _has go from that url to the
    resource that has it, besides [type]/[id]."""
    from ipt_fhir.fhir.search.path_types import names_by_url

    return names_by_url(resource_type, param.code)


class InstantText(sa.sql.expression.FunctionElement):
    """A timestamp column as fixed-width UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'), so a sort key on it is
    a plain string in every dialect: it orders like the time, and _page tokens carry it as JSON text."""

    type = sa.String()
    inherit_cache = True


@compiles(InstantText)
def _instant_text_sqlite(element, compiler, **kw):  # noqa: ANN001, ANN201 - SQLite stores exactly this text
    return compiler.process(element.clauses, **kw)


@compiles(InstantText, "postgresql")
def _instant_text_pg(element, compiler, **kw):  # noqa: ANN001, ANN201
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', '{_PG_INSTANT_TEXT}')"


def sqlite_instant(us: int) -> str:
    """The bound as SQLite stores the last_updated column."""
    return sqlite_datetime(instant(us))


def local_reference(t: sa.Table, base_url: str) -> list[Any]:
    """The condition that a search_reference row (table or alias `t`) refers to a resource on this server,
    as a search by [type]/[id] means it ("a local reference (i.e. a relative reference)", search.html
    #reference): a relative reference (url NULL), or an absolute one at this server's base `base_url`,
    which is the same reference written out. The index keeps the type and id of every RESTful URL, another
    server's too, so matching on them alone took http://other.org/fhir/Patient/1 for Patient/1. The url
    column holds the reference without its _history part, so it equals base/type/id exactly when local.
    No base (internal callers): no condition, every row as before. [] or [condition], to splice into ANDs."""
    if not base_url:
        return []
    own_url = sa.literal(base_url.rstrip("/") + "/") + t.c.target_type + "/" + t.c.target_id
    return [sa.or_(t.c.url.is_(None), t.c.url == own_url)]


class SqlBuilder:
    def __init__(self, base_url: str = "", expand_valueset: ValueSetExpander | None = None,
                 now_us: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.expand_valueset = expand_valueset
        self.now_us = now_us if now_us is not None else int(time.time() * 1_000_000)

    # ------------------------------------------------------------------ parameter rows
    @staticmethod
    def param_is(t: sa.Table, resource_type: str, code: str) -> Any:
        """The index rows of parameter `code` of `resource_type` (a reference alias reads its base's)."""
        if t is reference_index:
            stored, target_type = registry().stored_reference(resource_type, code)
            if target_type:
                return sa.and_(t.c.param == stored, t.c.target_type == target_type)
            return t.c.param == stored
        return t.c.param == code

    def last_updated_cond(self, col: Any, clause: Clause) -> Any:
        ors = []
        for prefix, ql, qh in clause.values:
            lower, upper, negate = instant_range(prefix, ql, qh, self.now_us)
            conds = ([col >= instant(lower)] if lower is not None else []) + \
                    ([col < instant(upper)] if upper is not None else [])
            cond = sa.and_(*conds) if conds else sa.true()
            ors.append(sa.not_(cond) if negate else cond)
        return sa.or_(*ors)

    # ------------------------------------------------------------------ value conditions
    def _token_value(self, t: sa.Table, v: Any) -> Any:
        system, code = v
        conds = []
        if code is not None:
            conds.append(t.c.code == code)
        if system is None:
            conds.append(t.c.system.is_(None))
        elif system is not ANY:
            conds.append(t.c.system == system)
        if code is None and system is None:
            return sa.false()
        return sa.and_(*conds)

    def _token_conds(self, clause: Clause) -> Any:
        t = token_index
        mod = clause.modifier
        if mod == "text":
            ors = []
            for q in clause.values:
                ors.append(sa.and_(t.c.text >= q, t.c.text < _next_prefix(q)))
                ors.append(t.c.text.like(f"% {_like_escape(q)}%", escape="\\"))
            return sa.or_(*ors)
        if mod == "of-type":
            return t.c.code.in_(clause.values)
        if mod in ("in", "not-in"):
            pairs: list[tuple[str | None, str]] = []
            for url in clause.values:
                expanded = self.expand_valueset(url) if self.expand_valueset else None
                if expanded is None:
                    raise bad_request(f"ValueSet {url} is not known to this server", clause.name, code="not-supported")
                pairs.extend(expanded)
            if not pairs:
                return sa.false()
            # A coding is in the value set when its system is one the set includes (a code without a
            # system is in no set that names one) and its code is, or the set takes the whole system.
            by_system: dict[str | None, list[str] | None] = {}
            for s, c in pairs:
                codes = by_system.setdefault(s, [])
                if c is None or codes is None:
                    by_system[s] = None
                else:
                    codes.append(c)
            return sa.or_(*[sa.and_(t.c.system == s if s else sa.true(),
                                    t.c.code.in_(codes) if codes is not None else sa.true())
                            for s, codes in by_system.items()])
        return sa.or_(*[self._token_value(t, v) for v in clause.values])

    def _string_conds(self, clause: Clause) -> Any:
        t = string_index
        ors = []
        for raw in clause.values:
            q = normalise(raw)
            short = q[:STRING_INDEX_LENGTH]
            if clause.modifier == "exact":
                ors.append(sa.and_(t.c.value == short, t.c.exact == raw))
            elif clause.modifier == "contains":
                ors.append(t.c.value_full.like(f"%{_like_escape(q)}%", escape="\\"))
            elif len(q) > STRING_INDEX_LENGTH:
                ors.append(sa.and_(t.c.value == short, t.c.value_full >= q, t.c.value_full < _next_prefix(q)))
            else:
                ors.append(sa.and_(t.c.value >= q, t.c.value < _next_prefix(q)) if q else sa.true())
        return sa.or_(*ors)

    def _uri_conds(self, clause: Clause) -> Any:
        t = uri_index
        ors = []
        for q in clause.values:
            if clause.modifier == "below":
                lo, hi = _below(q)
                ors.append(sa.or_(t.c.value == q, sa.and_(t.c.value >= lo, t.c.value < hi)))
            elif clause.modifier == "above":
                prefixes = {q}
                cut = q
                while "/" in cut.rstrip("/"):
                    cut = cut.rstrip("/").rsplit("/", 1)[0]
                    if cut.endswith(":/") or cut.endswith(":"):
                        break
                    prefixes.add(cut)
                    prefixes.add(cut + "/")
                ors.append(t.c.value.in_(sorted(prefixes)))
            else:
                ors.append(t.c.value == q)
        return sa.or_(*ors)

    def date_cond(self, low: Any, high: Any, prefix: str, ql: int, qh: int) -> Any:
        """The spec's range comparisons (search.html#prefix) on half-open [low, high) ranges."""
        if prefix == "eq":
            return sa.and_(low >= ql, high <= qh)
        if prefix == "ne":
            return sa.not_(sa.and_(low >= ql, high <= qh))
        if prefix == "gt":
            return high > qh
        if prefix == "lt":
            return low < ql
        if prefix == "ge":
            return sa.or_(high > qh, low >= ql)
        if prefix == "le":
            return sa.or_(low < ql, high <= qh)
        if prefix == "sa":
            return low >= qh
        if prefix == "eb":
            return high <= ql
        if prefix == "ap":
            mid = (ql + qh) // 2
            gap = abs(self.now_us - mid) // 10
            return sa.and_(low < qh + gap, high > ql - gap)
        raise bad_request(f"Unknown prefix {prefix}")

    @staticmethod
    def number_cond(low: Any, high: Any, prefix: str, value: float, lo: float, hi: float) -> Any:
        """Target ranges [low, high] (columns) matching a number or quantity value (number_search.py)."""
        cols = {LOW: low, HIGH: high}
        return sa.or_(*[sa.and_(*[_COMPARE[op](cols[col], cols.get(x, x)) for col, op, x in ands])
                        for ands in range_terms(prefix, value, lo, hi)])

    def _reference_target(self, raw: str, t: sa.Table, type_filter: tuple[str, ...], name: str) -> Any:
        ref = raw
        if self.base_url and ref.startswith(self.base_url + "/"):
            ref = ref[len(self.base_url) + 1:]
        version = None
        parts = ref.split("/")
        if "://" in ref or ref.startswith("urn:"):
            url, _, ver = raw.partition("|")
            c = t.c.url == url
            return sa.and_(c, t.c.target_version == ver) if ver else c
        if len(parts) >= 4 and parts[-2] == "_history":
            version = parts[-1]
            parts = parts[:-2]
        if len(parts) == 2:
            conds = [t.c.target_type == parts[0], t.c.target_id == parts[1]]
            if type_filter and parts[0] not in type_filter:
                return sa.false()
        elif len(parts) == 1:
            conds = [t.c.target_id == parts[0]]
            if type_filter:
                conds.append(t.c.target_type.in_(type_filter) if len(type_filter) > 1 else t.c.target_type == type_filter[0])
        else:
            raise bad_request(f"Malformed reference '{raw}' in {name}: expected Type/id, an id or an absolute URL", name)
        if version:
            conds.append(t.c.target_version == version)
        return sa.and_(*conds, *local_reference(t, self.base_url))

    def _composite_conds(self, resource_type: str, clause: Clause) -> Any:
        from ipt_fhir.fhir.search.parser import parse_value
        from ipt_fhir.fhir.search.registry import registry

        p = clause.param
        comps = [registry().component_param(resource_type, url) for url, _ in p.components]
        t = composite_index
        ors = []
        for parts in clause.values:
            if len(parts) != len(comps):
                raise bad_request(f"{clause.name} needs {len(comps)} $-separated components", clause.name)
            ands = []
            for i, (cp, raw) in enumerate(zip(comps, parts), start=1):
                a, b, lo, hi = (t.c[f"c{i}_{n}"] for n in ("a", "b", "low", "high"))
                v = parse_value(cp, None, raw, clause.name)
                if cp.type == "token":
                    ands.append(self._token_value(_Cols(a, b), v))
                elif cp.type == "quantity":
                    prefix, value, qlo, qhi, system, code = v
                    ands.append(self.number_cond(lo, hi, prefix, value, qlo, qhi))
                    if system:
                        ands.append(a == system)
                    if code:
                        ands.append(b == code)
                elif cp.type == "number":
                    prefix, value, qlo, qhi = v
                    ands.append(self.number_cond(lo, hi, prefix, value, qlo, qhi))
                elif cp.type == "date":
                    prefix, ql, qh = v
                    ands.append(self.date_cond(lo, hi, prefix, ql, qh))
                elif cp.type == "string":
                    q = normalise(v)
                    ands.append(sa.and_(a >= q, a < _next_prefix(q)))
                elif cp.type == "reference":
                    parts2 = v.split("/")
                    ands.append(sa.and_(a == parts2[-2], b == parts2[-1]) if len(parts2) >= 2 else b == v)
                else:
                    ands.append(a == v)
            ors.append(sa.and_(*ands))
        return sa.or_(*ors)

    # ------------------------------------------------------------------ clauses
    def value_select(self, resource_type: str, clause: Clause, id_col: str = "resource_id") -> tuple[sa.Table, Any]:
        """(index table, condition on it) for the values of a plain parameter clause."""
        p = clause.param
        t = INDEX_TABLES[p.type]
        if p.type == "token":
            cond = self._token_conds(clause)
        elif p.type == "string":
            cond = self._string_conds(clause)
        elif p.type == "uri":
            cond = self._uri_conds(clause)
        elif p.type == "date":
            cond = sa.or_(*[self.date_cond(t.c.low, t.c.high, *v) for v in clause.values])
        elif p.type == "number":
            cond = sa.or_(*[self.number_cond(t.c.value, t.c.high, *v) for v in clause.values])
        elif p.type == "quantity":
            ors = []
            for prefix, value, lo, hi, system, code in clause.values:
                c = [self.number_cond(t.c.value, t.c.high, prefix, value, lo, hi)]
                if system:
                    c.append(t.c.system == system)
                if code:
                    c.append(t.c.code == code)
                ors.append(sa.and_(*c))
            cond = sa.or_(*ors)
        elif p.type == "reference":
            tf = (clause.modifier,) if clause.modifier and clause.modifier[:1].isupper() else ()
            cond = sa.or_(*[self._reference_target(v, t, tf, clause.name) for v in clause.values])
        elif p.type == "composite":
            cond = self._composite_conds(resource_type, clause)
        else:
            raise bad_request(f"Unsupported parameter type {p.type}")
        return t, cond

    def ids_in(self, column: Any, resource_type: str, clause: Clause) -> Any:
        """`column` holds the id of a `resource_type` resource matching `clause`. The ids of an _id clause
        stay a list: as a compound SELECT (ids_select) they would meet SQLite's limit of 500 terms."""
        if clause.kind == "id" and clause.modifier != "missing":
            return column.in_(clause.values)
        return column.in_(self.ids_select(resource_type, clause))

    def _plain_selects(self, resource_type: str, clause: Clause) -> list[sa.Select]:
        """The members of the compound SELECT of an _id or `or` clause, flattened: SQLite takes no
        parenthesised compound as a member of another. An _id clause's are its ids themselves, as TextSql
        writes them (SQLite cannot name VALUES columns)."""
        if clause.kind == "id":
            if not clause.values:
                return [sa.select(sa.literal(None, sa.String)).where(sa.false())]
            return [sa.select(sa.literal(v, sa.String)) for v in clause.values]
        if clause.kind == "or":
            return [s for c in clause.inner for s in self._plain_selects(resource_type, c)]
        return [self.ids_select(resource_type, clause)]

    def ids_select(self, resource_type: str, clause: Clause) -> sa.Select:
        """SELECT resource_id of `resource_type` resources matching a positive clause (uncorrelated)."""
        if clause.kind == "and":  # every inner clause holds (security.search_filter: what a chain looks into)
            from .tables import resource_table as r
            # the first clause (what a chain asked) drives through its value index; the restrictions follow
            return sa.select(r.c.id).where(r.c.resource_type == resource_type, r.c.deleted.is_(False),
                                           *[self.condition(resource_type, c, r.c.resource_type, r.c.id, drive=i == 0)
                                             for i, c in enumerate(clause.inner)])
        if clause.kind in ("id", "or"):
            selects = self._plain_selects(resource_type, clause)
            if len(selects) == 1:
                return selects[0]
            return sa.union_all(*selects) if clause.kind == "id" else sa.union(*selects)
        if clause.kind == "chain":
            t = reference_index
            ors = []
            canonical = reaches_canonical(resource_type, clause.param)  # nesting bounded by the parser
            for target, inner in zip(clause.targets, clause.inner):
                ors.append(sa.and_(t.c.target_type == target, self.ids_in(t.c.target_id, target, inner),
                                   *local_reference(t, self.base_url)))
                if canonical and "url" in registry().params(target):
                    ors.append(self._named_by_url(t, target, inner))
            return sa.select(t.c.resource_id).where(
                t.c.resource_type == resource_type, self.param_is(t, resource_type, clause.param.code), sa.or_(*ors))
        if clause.kind == "has":
            t = reference_index
            direct = sa.select(t.c.target_id).where(
                t.c.resource_type == clause.source_type, self.param_is(t, clause.source_type, clause.param.code),
                t.c.target_type == resource_type,
                self.ids_in(t.c.resource_id, clause.source_type, clause.inner[0]),
                *local_reference(t, self.base_url))
            if not reaches_canonical(clause.source_type, clause.param) or "url" not in registry().params(resource_type):
                return direct
            url, version = uri_index.alias(), token_index.alias()
            # the url-named references of the sources, then the resources with that url (and version)
            named = sa.select(t.c.url, t.c.target_version).where(
                t.c.resource_type == clause.source_type, self.param_is(t, clause.source_type, clause.param.code),
                t.c.target_id.is_(None), t.c.url.is_not(None),
                self.ids_in(t.c.resource_id, clause.source_type, clause.inner[0])).subquery()
            via_url = sa.select(url.c.resource_id).select_from(
                url.join(named, named.c.url == url.c.value).outerjoin(version, sa.and_(
                    version.c.resource_type == url.c.resource_type, version.c.resource_id == url.c.resource_id,
                    version.c.param == "version"))).where(
                url.c.resource_type == resource_type, url.c.param == "url",
                sa.or_(named.c.target_version.is_(None), named.c.target_version == version.c.code))
            return sa.union(direct, via_url)
        if clause.modifier in ("missing", "not", "not-in") or self._is_negative(clause) or \
                clause.param.code == LAST_UPDATED:
            # negative clauses need the resource table, and _lastUpdated is one of its columns
            from .tables import resource_table as r
            return sa.select(r.c.id).where(r.c.resource_type == resource_type, r.c.deleted.is_(False),
                                           self.condition(resource_type, clause, r.c.resource_type, r.c.id))
        t, cond = self.value_select(resource_type, clause)
        return sa.select(t.c.resource_id).where(
            t.c.resource_type == resource_type, self.param_is(t, resource_type, clause.param.code), cond)

    def _named_by_url(self, ref: Any, target: str, inner: Clause) -> Any:
        """A url-named reference (row `ref`: url, and |version in target_version) to a `target` resource
        matching `inner`: its url is that resource's `url` and, when it names one, its version the
        resource's `version` (references.html#canonical). Uncorrelated, so each subquery runs once."""
        url, version = uri_index.alias(), token_index.alias()
        urls = sa.select(url.c.value).where(url.c.resource_type == target, url.c.param == "url",
                                            self.ids_in(url.c.resource_id, target, inner))
        versioned = sa.select(url.c.value, version.c.code).select_from(url.join(version, sa.and_(
            version.c.resource_type == url.c.resource_type, version.c.resource_id == url.c.resource_id,
            version.c.param == "version"))).where(url.c.resource_type == target, url.c.param == "url",
                                                  self.ids_in(url.c.resource_id, target, inner))
        return sa.and_(ref.c.target_id.is_(None), ref.c.url.in_(urls), sa.or_(
            ref.c.target_version.is_(None), sa.tuple_(ref.c.url, ref.c.target_version).in_(versioned)))

    @staticmethod
    def _is_negative(clause: Clause) -> bool:
        return clause.kind == "param" and clause.param.type in ("date", "number", "quantity") and any(
            v[0] == "ne" for v in clause.values)

    def condition(self, resource_type: str, clause: Clause, rt_col: Any, id_col: Any, drive: bool = False) -> Any:
        """A boolean condition on the outer resource row (rt_col, id_col)."""
        if clause.kind == "id":
            if clause.modifier == "missing":
                return sa.false() if clause.values[0] else sa.true()
            return id_col.in_(clause.values)
        if clause.kind in ("chain", "has", "or", "and"):
            return id_col.in_(self.ids_select(resource_type, clause))
        p = clause.param
        if p.code == LAST_UPDATED:  # every resource has one: never missing
            if clause.modifier == "missing":
                return sa.false() if clause.values[0] else sa.true()
            return self.last_updated_cond(id_col.table.c.last_updated, clause)
        t = INDEX_TABLES[p.type]
        if clause.modifier == "missing":
            probe = sa.exists().where(t.c.resource_type == rt_col, t.c.resource_id == id_col,
                                      self.param_is(t, resource_type, p.code))
            if p.type == "reference":  # a logical reference (identifier only) is a value too
                tt = token_index
                probe = sa.or_(probe, sa.exists().where(tt.c.resource_type == rt_col, tt.c.resource_id == id_col,
                                                        tt.c.param == p.code + ":identifier"))
            return sa.not_(probe) if clause.values[0] else probe
        negate = clause.modifier in ("not", "not-in")
        if negate:
            clause = Clause("param", clause.name, param=p, modifier="in" if clause.modifier == "not-in" else None,
                            values=clause.values)
        t, cond = self.value_select(resource_type, clause)
        if drive and not negate:
            return id_col.in_(sa.select(t.c.resource_id).where(
                t.c.resource_type == resource_type, self.param_is(t, resource_type, p.code), cond))
        probe = sa.exists().where(t.c.resource_type == rt_col, t.c.resource_id == id_col,
                                  self.param_is(t, resource_type, p.code), cond)
        return sa.not_(probe) if negate else probe

    @staticmethod
    def selectivity(clause: Clause) -> int:
        """Lower is more selective; negative clauses never drive."""
        if clause.kind == "id":
            return 0 if clause.modifier != "missing" else 99
        if clause.modifier in ("missing", "not", "not-in"):
            return 99
        if clause.kind == "or":
            return 10
        if clause.kind in ("chain", "has", "and"):
            return 30
        p = clause.param
        if SqlBuilder._is_negative(clause):
            return 99
        return {"reference": 10, "token": 20 if p.code not in ("status", "category", "intent", "gender") else 40,
                "string": 25, "uri": 25, "composite": 22, "quantity": 35, "number": 35, "date": 50}.get(p.type, 60)

    # ------------------------------------------------------------------ sorting
    def sort_expr(self, resource_type_col: Any, id_col: Any, p: Any, descending: bool) -> Any:
        """A correlated scalar subquery giving a resource's sort value for parameter p (NULLs last)."""
        if p.code == LAST_UPDATED:
            return InstantText(id_col.table.c.last_updated)
        t = INDEX_TABLES[p.type]
        if p.type in ("date", "number", "quantity"):  # a range sorts by its low end, or high end descending
            col = t.c.high if descending else (t.c.low if p.type == "date" else t.c.value)
        elif p.type == "token":
            col = t.c.code
        elif p.type == "reference":
            col = t.c.target_id
        elif p.type == "composite":
            col = t.c.c1_b
        else:
            col = t.c.value
        agg = sa.func.max(col) if descending else sa.func.min(col)
        sub = sa.select(agg).where(t.c.resource_type == resource_type_col, t.c.resource_id == id_col,
                                   self.param_is(t, p.resource_type, p.code)).scalar_subquery()
        if p.type in ("date",):
            return sa.func.coalesce(sub, MIN_TIME if descending else MAX_TIME)
        if p.type in ("number", "quantity"):
            return sa.func.coalesce(sub, -1e300 if descending else 1e300)
        return sa.func.coalesce(sub, "" if descending else "\U0010ffff")


class _Cols:
    """Adapter so composite (a, b) columns can reuse the token value matcher."""

    def __init__(self, system: Any, code: Any) -> None:
        self.c = type("C", (), {"system": system, "code": code})()


# ====================================================================== text SQL
class Unsupported(Exception):
    """TextSql does not build this clause; the caller uses SqlBuilder (SQLAlchemy) instead."""


def _and(*xs: str) -> str:
    return xs[0] if len(xs) == 1 else " AND ".join(f"({x})" for x in xs)


def _or(*xs: str) -> str:
    if not xs:
        return "1=0"
    return xs[0] if len(xs) == 1 else " OR ".join(f"({x})" for x in xs)


class TextSql:
    """The SQL of SqlBuilder written directly as text with named parameters.

    Building SQLAlchemy expression trees (coercion, column proxies, cache keys) cost milliseconds per
    search, ~50x the SQL itself on an indexed lookup; string building costs microseconds. Covers the
    common clauses (ids, tokens, strings, uris, dates, numbers, quantities, references, chains, _has,
    compartments, :missing, :not); :text, :in/:not-in and composites raise Unsupported.
    """

    def __init__(self, dialect: str, base_url: str = "", now_us: int | None = None) -> None:
        self.pg = dialect == "postgresql"
        self.base_url = base_url.rstrip("/")
        self.now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
        self.params: dict[str, Any] = {}
        self._aliases = 0

    def p(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s" if self.pg else f":{name}"

    def alias(self, prefix: str = "i") -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def in_(self, col: str, values: list | tuple) -> str:
        if not values:
            return "1=0"
        if len(values) == 1:
            return f"{col} = {self.p(values[0])}"
        return f"{col} IN ({', '.join(self.p(v) for v in values)})"

    # ------------------------------------------------------------------ parameter rows
    def param_is(self, a: str, table: str, resource_type: str, code: str) -> str:
        """The rows of parameter `code` of `resource_type` in index table alias `a` (see SqlBuilder)."""
        if table == "search_reference":
            stored, target_type = registry().stored_reference(resource_type, code)
            if target_type:
                return f"{a}.param = {self.p(stored)} AND {a}.target_type = {self.p(target_type)}"
            return f"{a}.param = {self.p(stored)}"
        return f"{a}.param = {self.p(code)}"

    def local_reference(self, a: str) -> list[str]:
        """search_sql.local_reference for search_reference alias `a`: [] without a base, else [condition]."""
        if not self.base_url:
            return []
        return [f"{a}.url IS NULL OR {a}.url = {self.p(self.base_url + '/')} || {a}.target_type || '/' || "
                f"{a}.target_id"]

    def last_updated_cond(self, r: str, clause: Clause) -> str:
        bound = instant if self.pg else sqlite_instant
        ors = []
        for prefix, ql, qh in clause.values:
            lower, upper, negate = instant_range(prefix, ql, qh, self.now_us)
            conds = ([f"{r}.last_updated >= {self.p(bound(lower))}"] if lower is not None else []) + \
                    ([f"{r}.last_updated < {self.p(bound(upper))}"] if upper is not None else [])
            cond = _and(*conds) if conds else "1=1"
            ors.append(f"NOT ({cond})" if negate else cond)
        return _or(*ors)

    # ------------------------------------------------------------------ value conditions
    def _token_value(self, a: str, v: Any) -> str:
        system, code = v
        if code is None and system is None:
            return "1=0"
        conds = []
        if code is not None:
            conds.append(f"{a}.code = {self.p(code)}")
        if system is None:
            conds.append(f"{a}.system IS NULL")
        elif system is not ANY:
            conds.append(f"{a}.system = {self.p(system)}")
        return _and(*conds)

    def _token_conds(self, clause: Clause, a: str) -> str:
        if clause.modifier == "of-type":
            return self.in_(f"{a}.code", clause.values)
        if clause.modifier not in (None, "not"):
            raise Unsupported(clause.modifier)
        return _or(*[self._token_value(a, v) for v in clause.values])

    def _string_conds(self, clause: Clause, a: str) -> str:
        ors = []
        for raw in clause.values:
            q = normalise(raw)
            short = q[:STRING_INDEX_LENGTH]
            if clause.modifier == "exact":
                ors.append(f"{a}.value = {self.p(short)} AND {a}.exact = {self.p(raw)}")
            elif clause.modifier == "contains":
                ors.append(f"{a}.value_full LIKE {self.p('%' + _like_escape(q) + '%')} ESCAPE {self.p(chr(92))}")
            elif len(q) > STRING_INDEX_LENGTH:
                ors.append(f"{a}.value = {self.p(short)} AND {a}.value_full >= {self.p(q)} AND "
                           f"{a}.value_full < {self.p(_next_prefix(q))}")
            elif q:
                ors.append(f"{a}.value >= {self.p(q)} AND {a}.value < {self.p(_next_prefix(q))}")
            else:
                ors.append("1=1")
        return _or(*ors)

    def _uri_conds(self, clause: Clause, a: str) -> str:
        ors = []
        for q in clause.values:
            if clause.modifier == "below":
                lo, hi = _below(q)
                ors.append(f"{a}.value = {self.p(q)} OR ({a}.value >= {self.p(lo)} AND {a}.value < {self.p(hi)})")
            elif clause.modifier == "above":
                prefixes = {q}
                cut = q
                while "/" in cut.rstrip("/"):
                    cut = cut.rstrip("/").rsplit("/", 1)[0]
                    if cut.endswith(":/") or cut.endswith(":"):
                        break
                    prefixes.add(cut)
                    prefixes.add(cut + "/")
                ors.append(self.in_(f"{a}.value", sorted(prefixes)))
            else:
                ors.append(f"{a}.value = {self.p(q)}")
        return _or(*ors)

    def date_cond(self, low: str, high: str, prefix: str, ql: int, qh: int) -> str:
        if prefix == "eq":
            return f"{low} >= {self.p(ql)} AND {high} <= {self.p(qh)}"
        if prefix == "ne":
            return f"NOT ({low} >= {self.p(ql)} AND {high} <= {self.p(qh)})"
        if prefix == "gt":
            return f"{high} > {self.p(qh)}"
        if prefix == "lt":
            return f"{low} < {self.p(ql)}"
        if prefix == "ge":
            return f"{high} > {self.p(qh)} OR {low} >= {self.p(ql)}"
        if prefix == "le":
            return f"{low} < {self.p(ql)} OR {high} <= {self.p(qh)}"
        if prefix == "sa":
            return f"{low} >= {self.p(qh)}"
        if prefix == "eb":
            return f"{high} <= {self.p(ql)}"
        if prefix == "ap":
            mid = (ql + qh) // 2
            gap = abs(self.now_us - mid) // 10
            return f"{low} < {self.p(qh + gap)} AND {high} > {self.p(ql - gap)}"
        raise bad_request(f"Unknown prefix {prefix}")

    def number_cond(self, a: str, prefix: str, value: float, lo: float, hi: float) -> str:
        """SqlBuilder.number_cond on index table alias `a`."""
        cols = {LOW: f"{a}.value", HIGH: f"{a}.high"}
        return _or(*[_and(*[f"{cols[col]} {op} {cols[x] if x in cols else self.p(x)}" for col, op, x in ands])
                     for ands in range_terms(prefix, value, lo, hi)])

    def _reference_target(self, raw: str, a: str, type_filter: tuple[str, ...], name: str) -> str:
        ref = raw
        if self.base_url and ref.startswith(self.base_url + "/"):
            ref = ref[len(self.base_url) + 1:]
        version = None
        parts = ref.split("/")
        if "://" in ref or ref.startswith("urn:"):
            url, _, ver = raw.partition("|")
            c = f"{a}.url = {self.p(url)}"
            return f"{c} AND {a}.target_version = {self.p(ver)}" if ver else c
        if len(parts) >= 4 and parts[-2] == "_history":
            version = parts[-1]
            parts = parts[:-2]
        if len(parts) == 2:
            if type_filter and parts[0] not in type_filter:
                return "1=0"
            conds = [f"{a}.target_type = {self.p(parts[0])}", f"{a}.target_id = {self.p(parts[1])}"]
        elif len(parts) == 1:
            conds = [f"{a}.target_id = {self.p(parts[0])}"]
            if type_filter:
                conds.append(self.in_(f"{a}.target_type", type_filter))
        else:
            raise bad_request(f"Malformed reference '{raw}' in {name}: expected Type/id, an id or an absolute URL", name)
        if version:
            conds.append(f"{a}.target_version = {self.p(version)}")
        return _and(*conds, *self.local_reference(a))

    def value_cond(self, clause: Clause, a: str) -> str:
        p = clause.param
        if p.type == "token":
            return self._token_conds(clause, a)
        if p.type == "string":
            return self._string_conds(clause, a)
        if p.type == "uri":
            return self._uri_conds(clause, a)
        if p.type == "date":
            return _or(*[self.date_cond(f"{a}.low", f"{a}.high", *v) for v in clause.values])
        if p.type == "number":
            return _or(*[self.number_cond(a, *v) for v in clause.values])
        if p.type == "quantity":
            ors = []
            for prefix, value, lo, hi, system, code in clause.values:
                c = [self.number_cond(a, prefix, value, lo, hi)]
                if system:
                    c.append(f"{a}.system = {self.p(system)}")
                if code:
                    c.append(f"{a}.code = {self.p(code)}")
                ors.append(_and(*c))
            return _or(*ors)
        if p.type == "reference":
            tf = (clause.modifier,) if clause.modifier and clause.modifier[:1].isupper() else ()
            return _or(*[self._reference_target(v, a, tf, clause.name) for v in clause.values])
        raise Unsupported(p.type)

    # ------------------------------------------------------------------ clauses
    def ids_in(self, column: str, resource_type: str, clause: Clause) -> str:
        """As SqlBuilder.ids_in: an _id clause's ids as a list, anything else as ids_select."""
        if clause.kind == "id" and clause.modifier != "missing":
            return self.in_(column, clause.values)
        return f"{column} IN ({self.ids_select(resource_type, clause)})"

    def ids_select(self, resource_type: str, clause: Clause) -> str:
        """SELECT of the ids of `resource_type` resources matching a clause (uncorrelated)."""
        if clause.kind == "id":
            if clause.modifier == "missing":
                raise Unsupported("_id:missing")
            return " UNION ALL ".join(f"SELECT {self.p(v)}" for v in clause.values) or "SELECT NULL WHERE 1=0"
        if clause.kind == "or":
            return " UNION ".join(self.ids_select(resource_type, c) for c in clause.inner)
        if clause.kind == "and":  # every inner clause holds (security.search_filter: what a chain looks into)
            r = self.alias("r")
            return (f"SELECT {r}.id FROM resource {r} WHERE {r}.resource_type = {self.p(resource_type)} AND "
                    f"{r}.deleted = {self.p(False)} AND "  # the first clause drives, as in SqlBuilder
                    + _and(*[self.condition(resource_type, c, r, drive=i == 0) for i, c in enumerate(clause.inner)]))
        if clause.kind in ("chain", "has") and reaches_canonical(
                clause.source_type if clause.kind == "has" else resource_type, clause.param):
            raise Unsupported("a chain or _has through canonical references")  # SqlBuilder's
        if clause.kind == "chain":
            a = self.alias()
            ors = [f"{a}.target_type = {self.p(target)} AND {self.ids_in(f'{a}.target_id', target, inner)}"
                   for target, inner in zip(clause.targets, clause.inner)]
            return f"SELECT {a}.resource_id FROM search_reference {a} WHERE " + _and(
                f"{a}.resource_type = {self.p(resource_type)}",
                self.param_is(a, "search_reference", resource_type, clause.param.code), _or(*ors),
                *self.local_reference(a))
        if clause.kind == "has":
            a = self.alias()
            return f"SELECT {a}.target_id FROM search_reference {a} WHERE " + _and(
                f"{a}.resource_type = {self.p(clause.source_type)}",
                self.param_is(a, "search_reference", clause.source_type, clause.param.code),
                f"{a}.target_type = {self.p(resource_type)}",
                self.ids_in(f"{a}.resource_id", clause.source_type, clause.inner[0]),
                *self.local_reference(a))
        if clause.modifier in ("missing", "not", "not-in") or SqlBuilder._is_negative(clause) or \
                clause.param.code == LAST_UPDATED:
            r = self.alias("r")
            return (f"SELECT {r}.id FROM resource {r} WHERE {r}.resource_type = {self.p(resource_type)} AND "
                    f"{r}.deleted = {self.p(False)} AND ({self.condition(resource_type, clause, r)})")
        a = self.alias()
        table = INDEX_TABLES[clause.param.type].name
        return (f"SELECT {a}.resource_id FROM {table} {a} WHERE {a}.resource_type = {self.p(resource_type)} "
                f"AND {self.param_is(a, table, resource_type, clause.param.code)} AND ({self.value_cond(clause, a)})")

    def condition(self, resource_type: str, clause: Clause, r: str, drive: bool = False) -> str:
        """A boolean condition on the outer resource row aliased `r`."""
        if clause.kind == "id":
            if clause.modifier == "missing":
                return "1=0" if clause.values[0] else "1=1"
            return self.in_(f"{r}.id", clause.values)
        if clause.kind in ("chain", "has", "or", "and"):
            return f"{r}.id IN ({self.ids_select(resource_type, clause)})"
        p = clause.param
        if p.code == LAST_UPDATED:  # every resource has one: never missing
            if clause.modifier == "missing":
                return "1=0" if clause.values[0] else "1=1"
            return self.last_updated_cond(r, clause)
        table = INDEX_TABLES[p.type].name
        if clause.modifier == "missing":
            a = self.alias()
            probe = (f"EXISTS (SELECT 1 FROM {table} {a} WHERE {a}.resource_type = {r}.resource_type "
                     f"AND {a}.resource_id = {r}.id AND {self.param_is(a, table, resource_type, p.code)})")
            if p.type == "reference":
                b = self.alias()
                probe = (f"({probe} OR EXISTS (SELECT 1 FROM search_token {b} WHERE {b}.resource_type = "
                         f"{r}.resource_type AND {b}.resource_id = {r}.id AND {b}.param = {self.p(p.code + ':identifier')}))")
            return f"NOT {probe}" if clause.values[0] else probe
        if clause.modifier == "not-in":
            raise Unsupported("not-in")
        negate = clause.modifier == "not"
        if negate:
            clause = Clause("param", clause.name, param=p, modifier=None, values=clause.values)
        a = self.alias()
        if drive and not negate:
            return (f"{r}.id IN (SELECT {a}.resource_id FROM {table} {a} WHERE {a}.resource_type = "
                    f"{self.p(resource_type)} AND {self.param_is(a, table, resource_type, p.code)} "
                    f"AND ({self.value_cond(clause, a)}))")
        probe = (f"EXISTS (SELECT 1 FROM {table} {a} WHERE {a}.resource_type = {r}.resource_type AND "
                 f"{a}.resource_id = {r}.id AND {self.param_is(a, table, resource_type, p.code)} "
                 f"AND ({self.value_cond(clause, a)}))")
        return f"NOT {probe}" if negate else probe

    def where(self, resource_type: str, clauses: list[Clause], r: str) -> str:
        conds = [f"{r}.resource_type = {self.p(resource_type)}", f"{r}.deleted = {self.p(False)}"]
        driver = None
        if clauses:
            best = min(clauses, key=SqlBuilder.selectivity)
            if SqlBuilder.selectivity(best) < 99:
                driver = best
        for c in clauses:
            conds.append(self.condition(resource_type, c, r, drive=c is driver))
        return _and(*conds)

    def sort_expr(self, r: str, p: Any, descending: bool) -> str:
        if p.code == LAST_UPDATED:  # as InstantText
            if self.pg:
                return f"to_char({r}.last_updated AT TIME ZONE 'UTC', '{_PG_INSTANT_TEXT}')"
            return f"{r}.last_updated"
        table = INDEX_TABLES[p.type].name
        if p.type in ("date", "number", "quantity"):  # as SqlBuilder.sort_expr
            col = "high" if descending else ("low" if p.type == "date" else "value")
        elif p.type == "token":
            col = "code"
        elif p.type == "reference":
            col = "target_id"
        elif p.type == "composite":
            col = "c1_b"
        else:
            col = "value"
        if p.type == "date":
            default = MIN_TIME if descending else MAX_TIME
        elif p.type in ("number", "quantity"):
            default = -1e300 if descending else 1e300
        else:
            default = "" if descending else "\U0010ffff"
        a = self.alias("s")
        return (f"COALESCE((SELECT {'max' if descending else 'min'}({a}.{col}) FROM {table} {a} WHERE "
                f"{a}.resource_type = {r}.resource_type AND {a}.resource_id = {r}.id AND "
                f"{self.param_is(a, table, p.resource_type, p.code)}), {self.p(default)})")
