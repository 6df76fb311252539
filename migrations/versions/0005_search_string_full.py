"""search_string.value_full: the whole normalised string (value keeps the indexed 255-character prefix).

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


def upgrade() -> None:
    op.add_column("search_string", sa.Column("value_full", CText, nullable=True))
    op.execute("UPDATE search_string SET value_full = value")


def downgrade() -> None:
    with op.batch_alter_table("search_string") as batch:
        batch.drop_column("value_full")
