"""Request models of the /key routes (LiteLLM's field names), and the key info shape."""

from __future__ import annotations

import math
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from passgate.auth.keys import MAX_KEY_LENGTH, looks_like_key
from passgate.auth.keys import looks_like_token as _looks_like_token
from passgate.config import DEPLOYMENT_NAME
from passgate.durations import parse_duration
from passgate.storage.models import Key

MAX_LIST = 1000
MAX_METADATA_BYTES = 64 * 1024
# Limits live in INTEGER columns: 32-bit signed on PostgreSQL, and SQLite refuses
# anything past 64 bits; a bigger value is refused here, naming the field, not by the database.
MAX_LIMIT = 2**31 - 1
MAX_JSON_INT = 2**63 - 1
MIN_JSON_INT = -(2**63)


def _duration(value: str) -> str:
    parse_duration(value)
    return value.strip()


def _secret(value: str) -> str:
    if not looks_like_key(value):
        raise ValueError("must be 'sk-' followed by visible ASCII characters (no spaces)")
    return value


def _identifier(value: str) -> str:
    if not (looks_like_key(value) or _looks_like_token(value)):
        raise ValueError("must be a virtual key (sk-...) or its token id")
    return value


def no_nul(value: str) -> str:
    """``value``, refused when it holds a NUL (PostgreSQL text cannot)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _route(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be a path starting with /")
    return value


def _deployment(value: str) -> str:
    # The shape of a name in the config file, not a configured name: a key may list a
    # deployment added to the config later, or kept for when one comes back.
    if DEPLOYMENT_NAME.fullmatch(value) is None:
        raise ValueError(
            "must be a deployment name: a letter or digit, then up to 63 letters, digits, "
            "dots, underscores or hyphens"
        )
    return value


def _storable(value: Any) -> None:
    # JSON that the parser accepts but the database or the response encoder cannot hold:
    # NaN and infinities (not JSON for PostgreSQL), integers past 64 bits (orjson), NUL.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            no_nul(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not MIN_JSON_INT <= item <= MAX_JSON_INT:
                raise ValueError("integers must fit in 64 bits")
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    _storable(value)
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(no_nul)]
Duration = Annotated[str, StringConstraints(max_length=32), AfterValidator(_duration)]
SecretKey = Annotated[str, StringConstraints(max_length=MAX_KEY_LENGTH), AfterValidator(_secret)]
KeyId = Annotated[str, StringConstraints(max_length=MAX_KEY_LENGTH), AfterValidator(_identifier)]
Route = Annotated[
    str, StringConstraints(max_length=1024), AfterValidator(_route), AfterValidator(no_nul)
]
DeploymentName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_deployment)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]
Limit = Annotated[int, Field(ge=0, le=MAX_LIMIT)]
Budget = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class KeySettings(BaseModel):
    """The settings of a key, shared by generate, update and regenerate."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key_alias: Name | None = None
    duration: Duration | None = None
    models: list[Name] | None = Field(default=None, max_length=MAX_LIST)
    allowed_routes: list[Route] | None = Field(default=None, max_length=MAX_LIST)
    allowed_deployments: list[DeploymentName] | None = Field(default=None, max_length=MAX_LIST)
    max_budget: Budget | None = None
    budget_duration: Duration | None = None
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None
    max_parallel_requests: Limit | None = None
    metadata: Metadata | None = None
    tags: list[Name] | None = Field(default=None, max_length=MAX_LIST)
    user_id: Name | None = None
    team_id: Name | None = None
    end_user_id: Name | None = None
    blocked: bool | None = None


class GenerateKeyRequest(KeySettings):
    """POST /key/generate; ``key`` lets the caller choose the secret."""

    key: SecretKey | None = None


class KeyRef(BaseModel):
    """A body naming one key: POST /key/block, /key/unblock."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: KeyId


class UpdateKeyRequest(KeySettings):
    """POST /key/update: only the fields present change (null clears a field)."""

    key: KeyId


class RegenerateKeyRequest(UpdateKeyRequest):
    """POST /key/regenerate: a new secret, optionally chosen, and settings to change."""

    new_key: SecretKey | None = None
    grace_period: Duration | None = None


class DeleteKeysRequest(BaseModel):
    """POST /key/delete: either ``keys`` or ``key_aliases``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    keys: list[KeyId] | None = Field(default=None, min_length=1, max_length=MAX_LIST)
    key_aliases: list[Name] | None = Field(default=None, min_length=1, max_length=MAX_LIST)

    @model_validator(mode="after")
    def _exactly_one(self) -> DeleteKeysRequest:
        if (self.keys is None) == (self.key_aliases is None):
            raise ValueError("give exactly one of 'keys' or 'key_aliases'")
        return self


class InfoQuery(BaseModel):
    """GET /key/info: without ``key``, a virtual key reads its own info."""

    model_config = ConfigDict(extra="forbid")

    key: KeyId | None = None


class ListQuery(BaseModel):
    """GET /key/list."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000)
    size: int = Field(default=10, ge=1, le=100)
    user_id: Name | None = None
    team_id: Name | None = None
    key_alias: Name | None = None
    return_full_object: bool = False


def key_info(row: Key) -> dict[str, Any]:
    """A key as the API returns it: its settings, spend and token id, never a secret."""
    metadata = row.metadata_ or {}
    return {
        "token": row.token,
        "key_alias": row.key_alias,
        "user_id": row.user_id,
        "team_id": row.team_id,
        "end_user_id": row.end_user_id,
        "models": row.models or [],
        "allowed_routes": row.allowed_routes or [],
        "allowed_deployments": row.allowed_deployments or [],
        "max_budget": row.max_budget,
        "budget_duration": row.budget_duration,
        "budget_reset_at": row.budget_reset_at,
        "spend": row.spend or 0.0,
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
        "max_parallel_requests": row.max_parallel_requests,
        "metadata": metadata,
        "tags": metadata.get("tags", []),
        "blocked": row.blocked,
        "expires": row.expires,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def key_page(rows: list[Key], total: int, query: ListQuery, full: bool) -> dict[str, Any]:
    """The /key/list answer: token ids (or full key info) and the paging counts."""
    return {
        "keys": [key_info(row) if full else row.token for row in rows],
        "total_count": total,
        "current_page": query.page,
        "total_pages": -(-total // query.size),
    }
