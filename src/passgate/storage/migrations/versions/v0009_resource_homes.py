"""Where each provider resource a deployment created lives.

With several deployments of one provider, a file or a job made on one exists only there:
``resource_homes`` keeps the deployment of every resource id seen created, so calls naming
it reach the same deployment, also after a restart.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "resource_homes",
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("resource_id", sa.String(512), primary_key=True),
        sa.Column("deployment", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("resource_homes")
