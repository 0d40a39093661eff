"""Request and answer shapes of the budget-holder routes (users, teams, customers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from passgate.api.key_schemas import MAX_LIST, Budget, Duration, Limit, Metadata, Name, Route
from passgate.storage.models import EndUser, Team, User


class BudgetedRequest(BaseModel):
    """The budget fields every holder's create and update requests take."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_budget: Budget | None = None
    budget_duration: Duration | None = None
    metadata: Metadata | None = None


class UserRequest(BudgetedRequest):
    """POST /user/new and /user/update; the key fields shape the key made with a new user."""

    user_id: Name | None = None
    user_alias: Name | None = None
    user_email: Name | None = None
    user_role: Name | None = None
    auto_create_key: bool = True
    key_alias: Name | None = None
    duration: Duration | None = None
    models: list[Name] | None = Field(default=None, max_length=MAX_LIST)
    allowed_routes: list[Route] | None = Field(default=None, max_length=MAX_LIST)
    team_id: Name | None = None
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None
    max_parallel_requests: Limit | None = None
    tags: list[Name] | None = Field(default=None, max_length=MAX_LIST)


class TeamRequest(BudgetedRequest):
    """POST /team/new and /team/update."""

    team_id: Name | None = None
    team_alias: Name | None = None


class CustomerRequest(BudgetedRequest):
    """POST /customer/new and /customer/update; ``user_id`` names the end user (LiteLLM)."""

    user_id: Name
    alias: Name | None = None
    blocked: bool | None = None


class UserQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Name


class TeamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team_id: Name


def budget_info(row: User | Team | EndUser) -> dict[str, Any]:
    """The budget fields every kind of holder shows."""
    return {
        "max_budget": row.max_budget,
        "budget_duration": row.budget_duration,
        "budget_reset_at": row.budget_reset_at,
        "spend": row.spend or 0.0,
        "metadata": row.metadata_ or {},
        "created_at": row.created_at,
    }


def user_info(row: User) -> dict[str, Any]:
    """A user as the API returns it."""
    return {"user_id": row.user_id, "user_alias": row.user_alias, **budget_info(row)}


def team_info(row: Team) -> dict[str, Any]:
    """A team as the API returns it."""
    return {"team_id": row.team_id, "team_alias": row.team_alias, **budget_info(row)}


def customer_info(row: EndUser) -> dict[str, Any]:
    """An end user as the API returns it (``user_id`` is LiteLLM's name for its id)."""
    metadata = row.metadata_ or {}
    return {
        "user_id": row.end_user_id,
        "end_user_id": row.end_user_id,
        "alias": metadata.get("alias"),
        "blocked": row.blocked,
        **budget_info(row),
    }
