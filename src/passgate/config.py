"""Settings from the environment, optionally overridden by a YAML file.

This is the one module that reads ``os.environ`` (through pydantic-settings).
An empty variable counts as unset, so the seed's ``export LITELLM_MASTER_KEY=""``
means "no master key", not "the empty key".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class SettingsError(Exception):
    """A setting is invalid; the message names it."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "passgate"


class Settings(BaseSettings):
    """Every setting of the gateway; env names are given in the README."""

    model_config = SettingsConfigDict(
        env_prefix="PASSGATE_",
        env_ignore_empty=True,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    mistral_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("mistral_api_key", "MISTRAL_API_KEY")
    )
    mistral_api_base: str = Field(
        default="https://api.mistral.ai",
        validation_alias=AliasChoices("mistral_api_base", "MISTRAL_API_BASE"),
    )
    master_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("master_key", "PASSGATE_MASTER_KEY", "LITELLM_MASTER_KEY"),
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("database_url", "DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("redis_url", "REDIS_URL")
    )
    data_dir: Path = Field(default_factory=_default_data_dir)

    host: str | None = None
    port: int = Field(default=4000, ge=1, le=65535)
    workers: int = Field(default=0, ge=0, le=256)  # 0: one per core
    allow_open: bool = False  # bind a non-loopback address without a master key

    connect_timeout: float = Field(default=10.0, gt=0)
    first_byte_timeout: float = Field(default=600.0, gt=0)
    idle_timeout: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=512 * MiB, gt=0)
    inspect_body_bytes: int = Field(default=1 * MiB, ge=0)
    upstream_pool_size: int = Field(default=0, ge=0)  # 0: unbounded

    key_cache_ttl: float = Field(default=5.0, gt=0, le=5.0)
    key_change_poll_interval: float = Field(default=0.1, gt=0, le=5.0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_requests: bool = True

    spend_batch_size: int = Field(default=1024, ge=1)
    spend_flush_interval: float = Field(default=1.0, gt=0)
    spend_queue_max: int = Field(default=100_000, ge=1)
    accounting: bool = True

    redis_fail_mode: Literal["open", "closed"] = "open"
    redis_prefix: str = Field(default="passgate:", min_length=1, max_length=64)
    budget_estimate_usd: float = Field(default=0.0, ge=0)

    webhook_url: str | None = None
    webhook_batch_size: int = Field(default=100, ge=1)
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "otlp_endpoint", "PASSGATE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    export_content: bool = False
    pricing: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("mistral_api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in ("postgres", "postgresql", "sqlite"):
            raise ValueError("must start with postgresql://, postgres:// or sqlite:///")
        return value

    @field_validator("redis_url", "webhook_url", "otlp_endpoint")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("must be a URL")
        return value


_ENV_NAMES = {
    "mistral_api_key": "MISTRAL_API_KEY",
    "mistral_api_base": "MISTRAL_API_BASE",
    "master_key": "PASSGATE_MASTER_KEY / LITELLM_MASTER_KEY",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "otlp_endpoint": "PASSGATE_OTLP_ENDPOINT",
}


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    return _ENV_NAMES.get(field, "PASSGATE_" + field.upper())


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        name = field if field.isupper() else f"{field} ({env_name(field)})"
        lines.append(f"invalid setting {name}: {item['msg']}")
    return "; ".join(lines)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from env, then the YAML file, then explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {config_file} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"config file {config_file} must hold a mapping of settings")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


CONFIG_ENV = "PASSGATE_CONFIG"


def config_file_from_env() -> Path | None:
    """The YAML file named by ``PASSGATE_CONFIG`` (how ``--config`` reaches worker processes)."""
    value = os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


SPEND_SOCKET_ENV = "PASSGATE_SPEND_SOCKET"  # set by the server for its workers, not by users


def spend_socket_from_env() -> str | None:
    """The spend-writer process's socket, when this process is a server worker."""
    return os.environ.get(SPEND_SOCKET_ENV) or None


def export_spend_socket(path: str) -> None:
    """Tell worker processes (spawned later, with this environment) where to send spend rows."""
    os.environ[SPEND_SOCKET_ENV] = path


def export_config_file(path: Path | None) -> None:
    """Hand ``--config`` to worker processes, which build their app from the environment."""
    if path is not None:
        os.environ[CONFIG_ENV] = str(path.resolve())
