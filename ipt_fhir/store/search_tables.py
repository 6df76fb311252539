"""Search index tables: one per search parameter type, rows keyed by (resource_type, resource_id, param).

Dates are stored as half-open [low, high) ranges of UTC epoch microseconds (BigInteger) rather than
timestamps: range-overlap arithmetic and open-ended sentinels are then plain integer comparisons that
behave identically on SQLite and PostgreSQL. Strings are stored normalised (case/accent folded in
Python, since SQLite has no accent-insensitive collation) with a "C" collation on PostgreSQL so that
prefix search is an index range scan. Extra token rows use derived parameter names:
`<param>:identifier` (Reference.identifier) and `<param>:of-type` (Identifier type|value).
`_lastUpdated` has no rows: it is the resource row's last_updated column. Nor has a reference alias
(`patient` = `subject.where(resolve() is Patient)`): its base's rows with that target_type are its rows.
"""
from __future__ import annotations

import sqlalchemy as sa

from .tables import metadata

CText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
CStr = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def _key() -> list[sa.Column]:
    return [
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(100), nullable=False),
    ]


token_index = sa.Table(
    "search_token", metadata, *_key(),
    sa.Column("system", sa.Text, nullable=True),
    sa.Column("code", sa.Text, nullable=True),
    sa.Column("text", CStr, nullable=True),
    sa.Index("ix_search_token_value", "resource_type", "param", "code", "system", "resource_id"),
    sa.Index("ix_search_token_res", "resource_type", "resource_id", "param"),
)

string_index = sa.Table(
    "search_string", metadata, *_key(),
    sa.Column("value", CStr, nullable=False),
    sa.Column("exact", sa.Text, nullable=False),
    # The whole normalised value (`value` is its first 255 characters, indexed for prefix search):
    # :contains and prefixes longer than 255 characters read it. NULL only on rows written before 0005.
    sa.Column("value_full", CText, nullable=True),
    sa.Index("ix_search_string_value", "resource_type", "param", "value", "resource_id"),
    sa.Index("ix_search_string_res", "resource_type", "resource_id", "param"),
)

date_index = sa.Table(
    "search_date", metadata, *_key(),
    sa.Column("low", sa.BigInteger, nullable=False),
    sa.Column("high", sa.BigInteger, nullable=False),
    sa.Index("ix_search_date_low", "resource_type", "param", "low", "high", "resource_id"),
    sa.Index("ix_search_date_high", "resource_type", "param", "high", "resource_id"),
    sa.Index("ix_search_date_res", "resource_type", "resource_id", "param"),
)

# Numbers and quantities are closed ranges [value, high]: a plain number or Quantity n is [n, n], a
# Range (Condition.onsetRange, useContext.valueRange) one row [low, high], an unbounded end NUMBER_MIN or
# NUMBER_MAX (number_search.range_terms compares them with the search range, search.html#prefix).
# `value` is the low end, so the value index still serves point searches and ascending sorts; the high
# index holds only the rows of Ranges (high <> value), so `gt`, `ge` and `ap` reach a Range by its high end
# through it at no cost to points (number_search.range_terms names that condition in the same form).
RANGE_ROWS = sa.text("high <> value")
number_index = sa.Table(
    "search_number", metadata, *_key(),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("high", sa.Float, nullable=False),
    sa.Index("ix_search_number_value", "resource_type", "param", "value", "resource_id"),
    sa.Index("ix_search_number_res", "resource_type", "resource_id", "param"),
    sa.Index("ix_search_number_high", "resource_type", "param", "high", "resource_id",
             sqlite_where=RANGE_ROWS, postgresql_where=RANGE_ROWS),
)

quantity_index = sa.Table(
    "search_quantity", metadata, *_key(),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("high", sa.Float, nullable=False),
    sa.Column("system", sa.Text, nullable=True),
    sa.Column("code", sa.Text, nullable=True),
    sa.Index("ix_search_quantity_value", "resource_type", "param", "code", "value", "resource_id"),
    sa.Index("ix_search_quantity_res", "resource_type", "resource_id", "param"),
    sa.Index("ix_search_quantity_high", "resource_type", "param", "code", "high", "resource_id",
             sqlite_where=RANGE_ROWS, postgresql_where=RANGE_ROWS),
)

reference_index = sa.Table(
    "search_reference", metadata, *_key(),
    sa.Column("target_type", sa.String(64), nullable=True),
    sa.Column("target_id", sa.String(64), nullable=True),
    sa.Column("target_version", sa.String(64), nullable=True),
    sa.Column("url", CText, nullable=True),  # absolute, canonical and urn references
    # One index by target serves forward searches, chains, _revinclude and compartments (all fix
    # target_id); the url index holds only absolute/canonical references (migration 0006).
    sa.Index("ix_search_reference_target", "target_id", "target_type", "resource_type", "param", "resource_id"),
    sa.Index("ix_search_reference_url", "resource_type", "param", "url",
             sqlite_where=sa.text("url IS NOT NULL"), postgresql_where=sa.text("url IS NOT NULL")),
    sa.Index("ix_search_reference_res", "resource_type", "resource_id", "param"),
)

uri_index = sa.Table(
    "search_uri", metadata, *_key(),
    sa.Column("value", CText, nullable=False),
    sa.Index("ix_search_uri_value", "resource_type", "param", "value"),
    sa.Index("ix_search_uri_res", "resource_type", "resource_id", "param"),
)

# A composite value: up to three components, each as (a, b, low, high):
# token -> (system, code), string -> (normalised, None), uri/reference -> (type or url, id),
# number/quantity -> (system, code, low, high) as search_quantity's [value, high], date -> (None, None, low, high).
composite_index = sa.Table(
    "search_composite", metadata, *_key(),
    *[c for i in (1, 2, 3) for c in (
        sa.Column(f"c{i}_a", sa.Text, nullable=True),
        sa.Column(f"c{i}_b", sa.Text, nullable=True),
        sa.Column(f"c{i}_low", sa.Float, nullable=True),
        sa.Column(f"c{i}_high", sa.Float, nullable=True),
    )],
    sa.Index("ix_search_composite_value", "resource_type", "param", "c1_b", "resource_id"),
    sa.Index("ix_search_composite_res", "resource_type", "resource_id", "param"),
)

INDEX_TABLES: dict[str, sa.Table] = {
    "token": token_index,
    "string": string_index,
    "date": date_index,
    "number": number_index,
    "quantity": quantity_index,
    "reference": reference_index,
    "uri": uri_index,
    "composite": composite_index,
}


# SQLite: newly created resources whose rows are not in INDEX_TABLES yet, oldest first (rowid order),
# until they are indexed many resources at a time (pending_index.py).
pending_index_table = sa.Table(
    "search_pending", metadata,
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(64), nullable=False),
)


def _statements(mark: str) -> tuple[dict[str, str], dict[str, str]]:
    inserts, deletes = {}, {}
    for kind, table in INDEX_TABLES.items():
        cols = [c.name for c in table.columns]
        inserts[kind] = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
        deletes[kind] = f"DELETE FROM {table.name} WHERE resource_type = {mark} AND resource_id = {mark}"
    return inserts, deletes


# The statements the write paths run on the driver cursor, past SQLAlchemy (search_index, bulk_write,
# bulk), per driver placeholder style: one full row (every column, in table order) per index table, and
# deleting all rows of one (resource_type, resource_id).
INDEX_INSERT_SQL: dict[str, dict[str, str]] = {}
INDEX_DELETE_SQL: dict[str, dict[str, str]] = {}
for _dialect, _mark in (("sqlite", "?"), ("postgresql", "%s")):
    INDEX_INSERT_SQL[_dialect], INDEX_DELETE_SQL[_dialect] = _statements(_mark)

# PostgreSQL extended statistics: the planner otherwise multiplies the selectivities of resource_type,
# param, system and code as if independent, estimates a handful of rows for `category=<common code>`
# (really every CarePlan) and merge-joins over all of them (18 ms instead of 0.2 ms at 100k care plans).
# Migration 0005 creates the same objects.
PG_STATISTICS: dict[str, tuple[str, ...]] = {
    "search_token": ("resource_type", "param", "system", "code"),
    "search_reference": ("resource_type", "param", "target_type"),
    "search_string": ("resource_type", "param", "value"),
    "search_date": ("resource_type", "param"),
    "search_quantity": ("resource_type", "param", "system", "code"),
    "search_uri": ("resource_type", "param"),
}
for _name, _cols in PG_STATISTICS.items():
    sa.event.listen(
        metadata.tables[_name], "after_create",
        sa.DDL(f"CREATE STATISTICS st_{_name} (dependencies, mcv) ON {', '.join(_cols)} FROM {_name}")
        .execute_if(dialect="postgresql"))
