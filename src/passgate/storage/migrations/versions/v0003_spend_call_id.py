"""Spend rows keyed on the gateway's own call id, not the client's x-request-id.

A client that repeats an ``x-request-id`` must not have its later calls dropped as
duplicates (and left unbilled): ``call_id`` becomes the primary key, ``request_id``
an ordinary indexed column. Existing rows keep their request id as their call id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("spend_logs") as batch:
        batch.add_column(sa.Column("call_id", sa.String(128), nullable=True))
    op.execute("UPDATE spend_logs SET call_id = request_id")
    with op.batch_alter_table("spend_logs") as batch:
        batch.alter_column("call_id", existing_type=sa.String(128), nullable=False)
        batch.drop_constraint("pk_spend_logs", type_="primary")
        batch.create_primary_key("pk_spend_logs", ["call_id"])
    op.create_index("ix_spend_logs_request_id", "spend_logs", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_spend_logs_request_id", table_name="spend_logs")
    with op.batch_alter_table("spend_logs") as batch:
        batch.drop_constraint("pk_spend_logs", type_="primary")
        batch.create_primary_key("pk_spend_logs", ["request_id"])
        batch.drop_column("call_id")
