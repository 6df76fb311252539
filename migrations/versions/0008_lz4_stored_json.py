"""PostgreSQL: the stored JSON (resource.content, resource_history.content) compressed with lz4.

pglz, the default, was the largest single CPU cost of PostgreSQL while writing: every resource over
about 2 kB is compressed twice (current row and history row), and lz4 compresses several times faster
at a similar ratio. Only new values are compressed with lz4; existing ones stay readable as they are.
A PostgreSQL built without lz4 keeps pglz (a notice, not an error). SQLite: nothing to do.

Revision ID: 0008_lz4_stored_json
Revises: 0007_rows_only_where_needed
"""
from alembic import op

revision = "0008_lz4_stored_json"
down_revision = "0007_rows_only_where_needed"
branch_labels = None
depends_on = None

_TABLES = ("resource", "resource_history")


def _set_compression(method: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"DO $$ BEGIN ALTER TABLE {table} ALTER COLUMN content SET COMPRESSION {method}; "
                   "EXCEPTION WHEN feature_not_supported OR syntax_error THEN "
                   f"RAISE NOTICE '{method} is not available: stored JSON keeps its compression'; END $$")


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
