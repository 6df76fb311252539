"""Bulk $import / $export jobs (see ipt_fhir/store/bulk_tables.py).

Revision ID: 0004_bulk_jobs
Revises: 0003_ipt_read_model
"""
from alembic import op
import sqlalchemy as sa

revision = "0004_bulk_jobs"
down_revision = "0003_ipt_read_model"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_job",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_bulk_job_status", "bulk_job", ["status"])


def downgrade() -> None:
    op.drop_index("ix_bulk_job_status", table_name="bulk_job")
    op.drop_table("bulk_job")
