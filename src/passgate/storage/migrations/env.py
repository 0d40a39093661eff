"""Alembic environment: runs on the connection that ``passgate.storage.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from passgate.storage.models import Base


def run_migrations() -> None:
    """Run the pending migrations on the connection given in the Alembic config."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `passgate db upgrade`, not the alembic command")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
