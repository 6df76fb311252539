"""search_string.value_full: the whole normalised string (value keeps the indexed 255-character prefix);
PostgreSQL extended statistics on the index tables' (resource_type, param, ...) columns.

:contains and prefixes longer than 255 characters read value_full, so text past the 255th character is
found. Existing rows get value_full = value (what they could match before); `ipt-fhir reindex` (or any
update of the resource) fills in the whole text.

Revision ID: 0005_search_string_full
Revises: 0004_bulk_jobs
"""
from alembic import op
import sqlalchemy as sa

revision = "0005_search_string_full"
down_revision = "0004_bulk_jobs"
branch_labels = None
depends_on = None

CText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


# The planner otherwise takes resource_type, param, system and code as independent and badly
# underestimates common codes (see store/search_tables.py PG_STATISTICS, which this mirrors).
PG_STATISTICS = {
    "search_token": ("resource_type", "param", "system", "code"),
    "search_reference": ("resource_type", "param", "target_type"),
    "search_string": ("resource_type", "param", "value"),
    "search_date": ("resource_type", "param"),
    "search_quantity": ("resource_type", "param", "system", "code"),
    "search_uri": ("resource_type", "param"),
}


def upgrade() -> None:
    op.add_column("search_string", sa.Column("value_full", CText, nullable=True))
    op.execute("UPDATE search_string SET value_full = value")
    if op.get_bind().dialect.name == "postgresql":
        for name, cols in PG_STATISTICS.items():
            op.execute(f"CREATE STATISTICS IF NOT EXISTS st_{name} (dependencies, mcv) ON {', '.join(cols)} FROM {name}")
            op.execute(f"ANALYZE {name}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in PG_STATISTICS:
            op.execute(f"DROP STATISTICS IF EXISTS st_{name}")
    with op.batch_alter_table("search_string") as batch:
        batch.drop_column("value_full")
