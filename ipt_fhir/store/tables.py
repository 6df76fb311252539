"""Tables of the versioned resource store.

`resource` holds the current version of each (type, id) as the exact JSON bytes served on read;
`resource_history` holds every version (vread, _history). `history.seq` is a global, monotonic
write order used for system/type history and stable paging. Search index tables live in
`store/search_tables.py`; the IPT read model in `store/ipt_tables.py`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a long-lived log.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UtcDateTime = sa.DateTime(timezone=True)


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"
    # `_lastUpdated` searches and sorts read last_updated here (it has no search_date rows).
    __table_args__ = (sa.Index("ix_resource_type_last_updated", "resource_type", "last_updated"),)

    resource_type: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    version_id: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    last_updated: datetime = Field(sa_column=sa.Column(UtcDateTime, nullable=False))
    deleted: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, default=False))
    # The JSON served on read, with server-owned id and meta; NULL once deleted.
    content: Optional[bytes] = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))


class HistoryRow(SQLModel, table=True):
    __tablename__ = "resource_history"
    __table_args__ = (
        sa.UniqueConstraint("resource_type", "id", "version_id", name="uq_history_version"),
        sa.Index("ix_history_type_seq", "resource_type", "seq"),
        sa.Index("ix_history_last_updated", "last_updated"),
    )

    seq: Optional[int] = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))
    resource_type: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    version_id: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    last_updated: datetime = Field(sa_column=sa.Column(UtcDateTime, nullable=False))
    method: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))  # POST | PUT | PATCH | DELETE
    content: Optional[bytes] = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))


class ConditionalCreateKey(SQLModel, table=True):
    """One row per (type, normalised If-None-Exist criteria) that created a resource.

    The primary key makes concurrent conditional creates with the same criteria race-free across
    threads, processes and server instances: the loser's insert fails and it answers with the winner.
    """

    __tablename__ = "conditional_create_key"

    resource_type: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    criteria_hash: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    resource_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))


# PostgreSQL's binary COPY and unnest() name each column's type; BigInteger before Integer, its base class.
_PG_TYPES = ((sa.BigInteger, "int8"), (sa.Integer, "int4"), (sa.Float, "float8"), (sa.Boolean, "bool"),
             (sa.DateTime, "timestamptz"), (sa.LargeBinary, "bytea"))


def pg_type(column: sa.Column) -> str:
    # String and Text: varchar and text share their binary form
    return next((name for kind, name in _PG_TYPES if isinstance(column.type, kind)), "text")


resource_table: sa.Table = ResourceRow.__table__  # type: ignore[assignment]
history_table: sa.Table = HistoryRow.__table__  # type: ignore[assignment]
conditional_key_table: sa.Table = ConditionalCreateKey.__table__  # type: ignore[assignment]
metadata = SQLModel.metadata


def lz4_content_sql(table: str) -> str:
    """PostgreSQL: compress the stored JSON of `table` with lz4 rather than the default pglz, which was
    the single largest CPU cost of the server while writing (resources over 2 kB are compressed, each in
    `resource` and `resource_history`). A server built without lz4 keeps pglz. Databases built by the
    migrations get this from 0008; this hook covers tables made by `metadata.create_all` (test and
    benchmark harnesses)."""
    return (f"DO $$ BEGIN ALTER TABLE {table} ALTER COLUMN content SET COMPRESSION lz4; "
            "EXCEPTION WHEN feature_not_supported OR syntax_error THEN "
            "RAISE NOTICE 'lz4 is not available: stored JSON keeps the default compression'; END $$")


for _table in (resource_table, history_table):
    sa.event.listen(_table, "after_create", sa.DDL(lz4_content_sql(_table.name)).execute_if(dialect="postgresql"))
