"""search_number and search_quantity rows are ranges [value, high]; a Range target is one such row.

A Range (Condition.onsetRange, useContext.valueRange, RiskAssessment.prediction.probabilityRange) was
indexed as two separate points, its low and its high end, so each prefix compared one end on its own:
`onset-age=5` found the onset range 5-15 by its end 5, `gt100` missed the open range "5 or more" (its only
point was 5), and a Range probability was not indexed at all. Search compares ranges now
(store/number_search.py).

Upgrade: `high` is added and set to `value` (a number or Quantity n is the range [n, n]: its searches do
not change); then the rows of the parameters that can reach a Range are rebuilt for every resource that
holds one, from its stored JSON, as the indexer now writes them. SQLite first moves rows still pending
(search_pending holds them as JSON arrays in the old column order). Downgrade: each range row becomes the
points of its bounded ends again, as the old indexer wrote them (Range probabilities: none).

Which parameters reach a Range, and how their rows are made, is frozen here as computed from the R4
definitions and the indexer (fhir/search/extract.py quantity_values): a migration must not depend on live
code.

Revision ID: 0011_number_ranges
Revises: 0010_pending_index_rows
"""
import importlib.util
import json
import math
import sys
from pathlib import Path

from alembic import op
import sqlalchemy as sa

revision = "0011_number_ranges"
down_revision = "0010_pending_index_rows"
branch_labels = None
depends_on = None

NUMBER_MIN, NUMBER_MAX = -sys.float_info.max, sys.float_info.max  # a Range's unbounded ends

# The types with `context-quantity` ((X.useContext.value as Quantity) | (X.useContext.value as Range))
# and `context-type-quantity` (composite: useContext.code $ value.as(Quantity) | value.as(Range)).
CONTEXT_TYPES = (
    "ActivityDefinition", "CapabilityStatement", "ChargeItemDefinition", "CodeSystem", "CompartmentDefinition",
    "ConceptMap", "EffectEvidenceSynthesis", "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario",
    "GraphDefinition", "ImplementationGuide", "Library", "Measure", "MessageDefinition", "NamingSystem",
    "OperationDefinition", "PlanDefinition", "Questionnaire", "ResearchDefinition", "ResearchElementDefinition",
    "RiskEvidenceSynthesis", "SearchParameter", "StructureDefinition", "StructureMap", "TerminologyCapabilities",
    "TestScript", "ValueSet",
)
# Plain (non-composite) parameters reaching a Range: resource type -> {param: (table, choice element path)};
# each path step is followed through lists, the last one is a choice `[x]` (`onset` -> onsetAge, onsetRange).
RANGE_PARAMS = {
    "Condition": {"onset-age": ("search_quantity", ("onset",)),
                  "abatement-age": ("search_quantity", ("abatement",))},
    "RiskAssessment": {"probability": ("search_number", ("prediction", "probability"))},
    **{t: {"context-quantity": ("search_quantity", ("useContext", "value"))} for t in CONTEXT_TYPES},
}
CHOICES = {"onset": ("Age", "Range"), "abatement": ("Age", "Range"), "probability": ("Decimal", "Range"),
           "value": ("Quantity", "Range")}


def _revision(name: str):  # noqa: ANN202 - a module
    """A migration before this one: frozen like this one, so it is safe to build on (alembic loads revisions
    from their files, not as an importable package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_0010 = _revision("0010_pending_index_rows")
# The columns of each index table after resource_type and resource_id (the order of a pending row's JSON
# array) at 0010, and at 0011.
_COMPOSITE = _0010.COMPOSITE
_COLUMNS_0010 = _0010.COLUMNS
_COLUMNS_0011 = {**_COLUMNS_0010, "number": ("search_number", ["param", "value", "high"]),
                 "quantity": ("search_quantity", ["param", "value", "high", "system", "code"])}


def _move_pending(columns: dict) -> None:
    """SQLite: move the rows held in search_pending, in the column order `columns`, into the index tables."""
    _0010.move_pending(columns)
    op.execute("DELETE FROM search_pending")


# ---------------------------------------------------------------- the indexer's rows, frozen

def _num(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else math.copysign(sys.float_info.max, f)


def _unit_keys(q: dict) -> list:
    code = q.get("code") or q.get("currency")
    keys = [(q.get("system"), code)]
    if isinstance(q.get("unit"), str) and q["unit"] != code:
        keys.append((None, q["unit"]))
    return keys


def _quantity_rows(v, is_range: bool) -> list:
    """(low, high, system, code) rows of one Quantity or Range value."""
    if not isinstance(v, dict):
        return []
    if not is_range:
        n = _num(v.get("value"))
        return [] if n is None else [(n, n, s, c) for s, c in _unit_keys(v)]
    low, high = (e if isinstance(e, dict) and _num(e.get("value")) is not None else None
                 for e in (v.get("low"), v.get("high")))
    if not (low or high):
        return []
    lo, hi = (_num(low["value"]) if low else NUMBER_MIN), (_num(high["value"]) if high else NUMBER_MAX)
    keys = _unit_keys(low) if low else []
    keys += [k for k in (_unit_keys(high) if high else []) if k not in keys]
    return [(lo, hi, s, c) for s, c in keys]


def _nodes(doc: dict, path: tuple) -> list:
    nodes = [doc]
    for step in path:
        nxt = []
        for node in nodes:
            v = node.get(step) if isinstance(node, dict) else None
            nxt += v if isinstance(v, list) else [] if v is None else [v]
        nodes = nxt
    return nodes


def _choice_values(node, name: str) -> list:
    """(value, is_range) of choice element `name` of one node (`onsetAge`, `probabilityRange`, ...)."""
    out = []
    for suffix in CHOICES[name]:
        v = node.get(name + suffix) if isinstance(node, dict) else None
        out += [(x, suffix == "Range") for x in (v if isinstance(v, list) else [v] if v is not None else [])]
    return out


def _param_rows(doc: dict, table: str, path: tuple) -> list:
    """The param's rows (after resource_type, resource_id, param) in the table's 0011 column order."""
    rows = []
    for node in _nodes(doc, path[:-1]):
        for v, is_range in _choice_values(node, path[-1]):
            if table == "search_number":
                if is_range:
                    rows += list(dict.fromkeys((lo, hi) for lo, hi, _, _ in _quantity_rows(v, True)))
                elif _num(v) is not None:
                    rows.append((_num(v), _num(v)))
            else:
                rows += [(lo, hi, s, c) for lo, hi, s, c in _quantity_rows(v, is_range)]
    return list(dict.fromkeys(rows))


def _context_type_quantity_rows(doc: dict) -> list:
    """Composite rows (c1_a .. c3_high) of context-type-quantity: each useContext's code $ its value."""
    rows = []
    for ctx in _nodes(doc, ("useContext",)):
        code = ctx.get("code") if isinstance(ctx, dict) else None
        if not isinstance(code, dict) or code.get("code") is None:
            continue
        for v, is_range in _choice_values(ctx, "value"):
            for lo, hi, s, c in _quantity_rows(v, is_range):
                rows.append((code.get("system"), code["code"], None, None, s, c, lo, hi) + (None,) * 4)
    return list(dict.fromkeys(rows))


def _rebuild_range_rows() -> None:
    """Rewrite, from the stored JSON, the rows of every Range-reaching parameter of each current
    resource whose JSON mentions a Range (only those can have rows to change)."""
    conn = op.get_bind()
    has_range = ("position('Range'::bytea in content) > 0" if conn.dialect.name == "postgresql"
                 else "instr(CAST(content AS TEXT), 'Range') > 0")
    types = sa.bindparam("types", expanding=True)
    # A page at a time, in key order: a large store's resources do not fit in memory at once.
    page = sa.text(f"SELECT resource_type, id, content FROM resource WHERE resource_type IN :types "
                   f"AND NOT deleted AND content IS NOT NULL AND {has_range} "
                   "AND (resource_type > :after_type OR (resource_type = :after_type AND id > :after_id)) "
                   "ORDER BY resource_type, id LIMIT 500").bindparams(types)
    after = ("", "")
    while found := conn.execute(page, {"types": list(RANGE_PARAMS), "after_type": after[0],
                                       "after_id": after[1]}).all():
        after = (found[-1][0], found[-1][1])
        _rebuild_rows_of(conn, found)


def _rebuild_rows_of(conn, found) -> None:  # noqa: ANN001 - a Connection, rows (resource_type, id, content)
    for rt, rid, content in found:
        doc = json.loads(bytes(content))
        plan = [(param, table, _param_rows(doc, table, path)) for param, (table, path) in RANGE_PARAMS[rt].items()]
        if rt in CONTEXT_TYPES:
            plan.append(("context-type-quantity", "search_composite", _context_type_quantity_rows(doc)))
        for param, table, rows in plan:
            kind = table.removeprefix("search_")
            cols = _COLUMNS_0011[kind][1]
            key = {"rt": rt, "rid": rid, "param": param}
            conn.execute(sa.text(f"DELETE FROM {table} WHERE resource_type = :rt AND resource_id = :rid "
                                 "AND param = :param"), key)
            if rows:
                marks = ", ".join(f":v{i}" for i in range(len(cols) - 1))
                conn.execute(sa.text(f"INSERT INTO {table} (resource_type, resource_id, {', '.join(cols)}) "
                                     f"VALUES (:rt, :rid, :param, {marks})"),
                             [{**key, **{f"v{i}": x for i, x in enumerate(row)}} for row in rows])


def upgrade() -> None:
    _move_pending(_COLUMNS_0010)
    for table in ("search_number", "search_quantity"):
        op.add_column(table, sa.Column("high", sa.Float, nullable=True))
        op.execute(f"UPDATE {table} SET high = value")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("high", existing_type=sa.Float, nullable=False)
    _rebuild_range_rows()


def downgrade() -> None:
    _move_pending(_COLUMNS_0011)
    # a Range probability: the old indexer wrote none
    op.execute("DELETE FROM search_number WHERE high <> value")
    # a Range quantity: a point per bounded end (the high end added, the unbounded low end dropped)
    op.execute(sa.text("INSERT INTO search_quantity (resource_type, resource_id, param, value, high, system, code) "
                       "SELECT resource_type, resource_id, param, high, high, system, code FROM search_quantity "
                       "WHERE high <> value AND high < :max").bindparams(max=NUMBER_MAX))
    op.execute(sa.text("DELETE FROM search_quantity WHERE high <> value AND value = :min").bindparams(min=NUMBER_MIN))
    composite = ", ".join(_COMPOSITE)
    high_end = composite.replace("c2_low", "c2_high")
    op.execute(sa.text(f"INSERT INTO search_composite (resource_type, resource_id, param, {composite}) "
                       f"SELECT resource_type, resource_id, param, {high_end} FROM search_composite "
                       "WHERE param = 'context-type-quantity' AND c2_high <> c2_low AND c2_high < :max")
               .bindparams(max=NUMBER_MAX))
    op.execute(sa.text("DELETE FROM search_composite WHERE param = 'context-type-quantity' AND c2_high <> c2_low "
                       "AND c2_low = :min").bindparams(min=NUMBER_MIN))
    op.execute("UPDATE search_composite SET c2_high = c2_low WHERE param = 'context-type-quantity'")
    for table in ("search_number", "search_quantity"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("high")
