"""Queries on the budget holders a key can belong to: users, teams and end users.

Every function takes the caller's session and the entity class (``User``, ``Team`` or
``EndUser``), so budgets and limits code reads all three the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from passgate.storage.models import EndUser, Team, User

Entity = TypeVar("Entity", User, Team, EndUser)

_ID_COLUMN: dict[type[Any], str] = {User: "user_id", Team: "team_id", EndUser: "end_user_id"}


def id_column(model: type[Entity]) -> str:
    """The primary key column of an entity class."""
    return _ID_COLUMN[model]


def _check_fields(model: type[Entity], values: Mapping[str, Any]) -> None:
    columns = {attr.key for attr in model.__mapper__.column_attrs}
    unknown = set(values) - (columns - {id_column(model), "created_at"})
    if unknown:
        raise ValueError(f"{model.__tablename__} has no settable field(s) {sorted(unknown)}")


async def get(session: AsyncSession, model: type[Entity], entity_id: str) -> Entity | None:
    """The entity with this id."""
    return await session.get(model, entity_id)


async def get_many(
    session: AsyncSession, model: type[Entity], entity_ids: Sequence[str]
) -> dict[str, Entity]:
    """Entities by id, for the ids that exist."""
    if not entity_ids:
        return {}
    column = getattr(model, id_column(model))
    result = await session.execute(select(model).where(column.in_(entity_ids)))
    return {getattr(row, id_column(model)): row for row in result.scalars()}


async def upsert(
    session: AsyncSession, model: type[Entity], entity_id: str, values: Mapping[str, Any]
) -> Entity:
    """Create the entity or set the given fields on the existing one."""
    _check_fields(model, values)
    row = await session.get(model, entity_id)
    if row is None:
        row = model(**{id_column(model): entity_id}, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    await session.flush()
    return row


async def update_fields(
    session: AsyncSession, model: type[Entity], entity_id: str, values: Mapping[str, Any]
) -> Entity | None:
    """Set fields on an existing entity; None when there is no such entity."""
    _check_fields(model, values)
    row = await session.get(model, entity_id)
    if row is None:
        return None
    for name, value in values.items():
        setattr(row, name, value)
    await session.flush()
    return row


async def add_spend(
    session: AsyncSession, model: type[Entity], entity_id: str, amount: float
) -> bool:
    """Add to an entity's spend in one statement (safe under concurrency); False if absent."""
    column = getattr(model, id_column(model))
    result = await session.execute(
        update(model)
        .where(column == entity_id)
        .values(spend=model.spend + amount)
        .returning(column)
    )
    return result.scalar_one_or_none() is not None


async def remove(session: AsyncSession, model: type[Entity], entity_id: str) -> bool:
    """Delete an entity; False when there was none."""
    column = getattr(model, id_column(model))
    result = await session.execute(delete(model).where(column == entity_id).returning(column))
    return result.scalar_one_or_none() is not None


async def page(
    session: AsyncSession, model: type[Entity], page_number: int, size: int
) -> tuple[list[Entity], int]:
    """One page of entities (by id) and their total count."""
    column = getattr(model, id_column(model))
    total = await session.scalar(select(func.count()).select_from(model))
    result = await session.execute(
        select(model).order_by(column).offset((page_number - 1) * size).limit(size)
    )
    return list(result.scalars()), int(total or 0)
