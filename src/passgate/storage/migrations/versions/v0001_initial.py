"""Keys, users, teams, end users and spend logs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

EMPTY_LIST = sa.text("'[]'")
EMPTY_DICT = sa.text("'{}'")


def _ts(name: str, **kwargs: object) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def _budget_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("max_budget", sa.Float(), nullable=True),
        sa.Column("budget_duration", sa.String(32), nullable=True),
        _ts("budget_reset_at", nullable=True),
        sa.Column("spend", sa.Float(), nullable=False, server_default=sa.text("0")),
    ]


def _created_at() -> sa.Column[object]:
    return _ts("created_at", nullable=False, server_default=sa.func.now())


def _metadata() -> sa.Column[object]:
    return sa.Column("metadata", sa.JSON(), nullable=False, server_default=EMPTY_DICT)


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("key_alias", sa.String(256), nullable=True),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("team_id", sa.String(256), nullable=True),
        sa.Column("end_user_id", sa.String(256), nullable=True),
        sa.Column("models", sa.JSON(), nullable=False, server_default=EMPTY_LIST),
        sa.Column("allowed_routes", sa.JSON(), nullable=False, server_default=EMPTY_LIST),
        *_budget_columns(),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.Integer(), nullable=True),
        sa.Column("max_parallel_requests", sa.Integer(), nullable=True),
        _metadata(),
        sa.Column("blocked", sa.Boolean(), nullable=False, server_default=sa.false()),
        _ts("expires", nullable=True),
        _created_at(),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.Column("grace_token", sa.String(64), nullable=True),
        _ts("grace_until", nullable=True),
        sa.PrimaryKeyConstraint("token", name="pk_keys"),
        sa.UniqueConstraint("key_alias", name="uq_keys_key_alias"),
    )
    for column in ("user_id", "team_id", "end_user_id", "grace_token"):
        op.create_index(f"ix_keys_{column}", "keys", [column])

    op.create_table(
        "users",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("user_alias", sa.String(256), nullable=True),
        *_budget_columns(),
        _metadata(),
        _created_at(),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
    )
    op.create_table(
        "teams",
        sa.Column("team_id", sa.String(256), nullable=False),
        sa.Column("team_alias", sa.String(256), nullable=True),
        *_budget_columns(),
        _metadata(),
        _created_at(),
        sa.PrimaryKeyConstraint("team_id", name="pk_teams"),
    )
    op.create_table(
        "end_users",
        sa.Column("end_user_id", sa.String(256), nullable=False),
        *_budget_columns(),
        sa.Column("blocked", sa.Boolean(), nullable=False, server_default=sa.false()),
        _metadata(),
        _created_at(),
        sa.PrimaryKeyConstraint("end_user_id", name="pk_end_users"),
    )

    op.create_table(
        "spend_logs",
        sa.Column("request_id", sa.String(128), nullable=False),
        _ts("start_time", nullable=False),
        _ts("first_byte_time", nullable=True),
        _ts("end_time", nullable=True),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("key_alias", sa.String(256), nullable=True),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("team_id", sa.String(256), nullable=True),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("upstream_path", sa.Text(), nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("annotated_pages", sa.Integer(), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("characters", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("ttfb_ms", sa.Float(), nullable=True),
        sa.Column("upstream_request_id", sa.String(256), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("tags", sa.JSON(), nullable=False, server_default=EMPTY_LIST),
        sa.PrimaryKeyConstraint("request_id", name="pk_spend_logs"),
    )
    for column in ("start_time", "token", "end_user", "model"):
        op.create_index(f"ix_spend_logs_{column}", "spend_logs", [column])


def downgrade() -> None:
    for table in ("spend_logs", "end_users", "teams", "users", "keys"):
        op.drop_table(table)
