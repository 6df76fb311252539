"""search_pending: where SQLite holds the search index rows of newly created resources (one row per
resource, its rows of each index table as a JSON array) until they move into the index tables in batches
(ipt_fhir/store/pending_index.py).

The downgrade first moves any pending rows into the index tables, so no row is lost. PostgreSQL never
fills the table; it exists there too so that both databases have one schema.

Revision ID: 0010_pending_index_rows
Revises: 0009_implicit_code_systems
"""
from alembic import op
import sqlalchemy as sa

revision = "0010_pending_index_rows"
down_revision = "0009_implicit_code_systems"
branch_labels = None
depends_on = None

# The columns of each index table at 0009 after resource_type and resource_id, frozen here (0011 reads
# them too: the order of a pending row's JSON arrays until 0011).
COMPOSITE = [f"c{i}_{part}" for i in (1, 2, 3) for part in ("a", "b", "low", "high")]
COLUMNS = {
    "token": ("search_token", ["param", "system", "code", "text"]),
    "string": ("search_string", ["param", "value", "exact", "value_full"]),
    "date": ("search_date", ["param", "low", "high"]),
    "number": ("search_number", ["param", "value"]),
    "quantity": ("search_quantity", ["param", "value", "system", "code"]),
    "reference": ("search_reference", ["param", "target_type", "target_id", "target_version", "url"]),
    "uri": ("search_uri", ["param", "value"]),
    "composite": ("search_composite", ["param", *COMPOSITE]),
}


def upgrade() -> None:
    op.create_table(
        "search_pending",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        *[sa.Column(kind, sa.Text, nullable=True) for kind in COLUMNS],
    )


def move_pending(columns: dict = COLUMNS) -> None:
    """SQLite: copy the rows held in search_pending into the index tables, reading each JSON array in the
    column order `columns` gives (0011 passes its own); PostgreSQL never holds any."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for kind, (table, cols) in columns.items():
        values = ", ".join(f"json_extract(j.value, '$[{i}]')" for i in range(len(cols)))
        op.execute(f"INSERT INTO {table} (resource_type, resource_id, {', '.join(cols)}) "
                   f"SELECT p.resource_type, p.resource_id, {values} "
                   f"FROM search_pending p, json_each(p.{kind}) j WHERE p.{kind} IS NOT NULL")


def downgrade() -> None:
    move_pending()
    op.drop_table("search_pending")
