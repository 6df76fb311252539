"""search_pending keeps only the key of each pending resource: its index rows are extracted from its
stored JSON when it is indexed (ipt_fhir/store/pending_index.py), no longer written at create.

Upgrade: the rows a pending resource held are dropped with their columns; the resource stays pending and
is indexed from its stored JSON, which gives the same rows. Downgrade: pending resources are indexed
first (by this revision's code, whose extraction matches this schema), since 0012's code would find no
rows to move for them. PostgreSQL never fills the table.

Revision ID: 0013_pending_keys_only
Revises: 0012_range_high_index
"""
from alembic import context, op
import sqlalchemy as sa

revision = "0013_pending_keys_only"
down_revision = "0012_range_high_index"
branch_labels = None
depends_on = None

KINDS = ("token", "string", "date", "number", "quantity", "reference", "uri", "composite")


def upgrade() -> None:
    with op.batch_alter_table("search_pending") as batch:
        for kind in KINDS:
            batch.drop_column(kind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if context.is_offline_mode():
            raise RuntimeError("0013's downgrade indexes the pending resources first: run it against the "
                               "database, not as SQL")
        # This revision's code: the index tables it inserts into are the ones of this schema, since the
        # downgrades of any later revision that changed them have run before this one.
        from ipt_fhir.store import pending_index

        pending_index.move(bind.connection.driver_connection)
    with op.batch_alter_table("search_pending") as batch:
        for kind in KINDS:
            batch.add_column(sa.Column(kind, sa.Text, nullable=True))
