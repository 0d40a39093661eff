"""The gateway's settings, and how they travel from the ``passgate`` command to its processes.

``Settings`` is a plain pydantic model. Reading it from the environment and a YAML file
is ``passgate.settings_env``'s job (pydantic-settings), done once by the ``passgate``
command, which hands the validated settings to the server, its workers and its spend
writer (``passgate.runtime.handover``, never through the environment): a worker never imports
pydantic-settings or PyYAML, which would stay in every worker's memory for nothing
(docs/performance.md). This module and
``settings_env`` are the only ones that read ``os.environ``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from passgate.providers.base import ProviderSpec
from passgate.providers.registry import (
    BUILTIN,
    COMPATIBLE_SECTION,
    prefix_problem,
    spec_named,
    with_servers,
)

KiB = 1024
MiB = 1024 * 1024


class SettingsError(Exception):
    """A setting is invalid; the message names it."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "passgate"


def check_base_url(value: str) -> str:
    """An upstream base URL: http(s), a host, no query string or fragment."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value


# a deployment's name: shown in headers, logs, spend rows and metrics labels
DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_DEPLOYMENT = "default"  # the one deployment a provider without a list has


class DeploymentSettings(BaseModel):
    """One upstream deployment of a provider (a workspace, an account, a self-hosted server):
    its name, base URL (the provider's when None), key (none sent when None), share of the
    traffic, the models it serves (every model when None), and its own prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    api_base: str | None = None
    api_key: SecretStr | None = None
    weight: float = Field(default=1.0, gt=0, le=1_000_000)
    models: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=10_000)
    # where calls listing the provider's stateful resources go (the first entry when none is)
    primary: bool = False
    pricing: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not DEPLOYMENT_NAME.fullmatch(value):
            raise ValueError(
                "must be 1 to 64 of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _check_base(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)


class UpstreamSettings(BaseModel):
    """One provider's upstream: its base URL (the provider's default when None) and key, or
    several named deployments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_base: str | None = None
    api_key: SecretStr | None = None
    deployments: tuple[DeploymentSettings, ...] = Field(default=(), max_length=256)

    @field_validator("api_base")
    @classmethod
    def _check_base(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)

    @field_validator("deployments")
    @classmethod
    def _check_deployments(
        cls, value: tuple[DeploymentSettings, ...]
    ) -> tuple[DeploymentSettings, ...]:
        names: set[str] = set()
        primaries = 0
        for entry in value:
            if entry.name in names:
                raise ValueError(f"deployment {entry.name!r} is named twice")
            names.add(entry.name)
            primaries += entry.primary
        if primaries > 1:
            raise ValueError("at most one deployment may be the primary")
        return value


@dataclass(frozen=True, slots=True)
class DeploymentEntry:
    """A deployment as the gateway builds it: base URL and key resolved (None: unset)."""

    name: str
    api_base: str | None
    api_key: str | None
    weight: float
    models: frozenset[str] | None
    primary: bool


# an HTTP header name (RFC 9110 token)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SERVER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class CompatibleServerSettings(BaseModel):
    """A named server speaking OpenAI's API (vLLM, SGLang, Ollama, TGI, ...), declared in the
    config file: its route prefix (``/<name>`` unless given), base URL, optional key, the
    header that carries the key, and the prices of its models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    prefix: str | None = None
    api_base: str
    api_key: SecretStr | None = None
    credential_header: str = "Authorization"
    pricing: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _SERVER_NAME.fullmatch(value):
            raise ValueError("must be 1 to 32 of a-z, 0-9, '_' or '-', starting with a letter")
        return value

    @field_validator("api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return check_base_url(value)

    @field_validator("credential_header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be an HTTP header name")
        return value

    @property
    def route(self) -> str:
        """The route prefix."""
        return self.prefix if self.prefix is not None else "/" + self.name


# a provider's flat setting: ``mistral_api_key``, ``anthropic_api_base``, ...
_FLAT_UPSTREAM = re.compile(r"([a-z][a-z0-9_]*?)_api_(key|base)")


_BUILTIN_NAMES = frozenset(spec.name for spec in BUILTIN)


class Settings(BaseModel):
    """Every setting of the gateway; env names and defaults are in docs/configuration.md."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    # provider name -> its base URL and key (docs/providers.md); ``<name>_api_base`` and
    # ``<name>_api_key`` given flat (the config file, overrides) land here too
    providers: dict[str, UpstreamSettings] = Field(default_factory=dict)
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
    # Deployments and failover (docs/deployments.md)
    upstream_max_attempts: int = Field(default=3, ge=1, le=10)
    upstream_retry_backoff: float = Field(default=0.05, ge=0, le=10)
    deployment_cooldown: float = Field(default=5.0, gt=0, le=86_400)
    deployment_rate_limit_cooldown: float = Field(default=10.0, gt=0, le=86_400)
    deployment_dead_cooldown: float = Field(default=600.0, gt=0, le=604_800)
    deployment_sync_interval: float = Field(default=0.25, gt=0, le=60)
    # Networks and TLS (docs/networks.md). The proxy URL may hold credentials: secret.
    upstream_proxy: SecretStr | None = None
    upstream_ca_bundle: Path | None = None
    upstream_client_cert: Path | None = None
    upstream_client_key: Path | None = None
    upstream_tls_verify: bool = True
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    # what a client may ask of the server side, per worker (docs/server-limits.md)
    max_header_line_bytes: int = Field(default=16 * KiB, ge=256)
    max_head_bytes: int = Field(default=64 * KiB, ge=1 * KiB)
    max_headers: int = Field(default=100, ge=1)
    head_timeout: float = Field(default=10.0, gt=0)
    body_idle_timeout: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=4096, ge=1)
    max_calls_in_flight: int = Field(default=512, ge=0)  # 0: unbounded

    key_cache_ttl: float = Field(default=5.0, gt=0, le=5.0)
    key_change_poll_interval: float = Field(default=0.1, gt=0, le=5.0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_requests: bool = True

    spend_batch_size: int = Field(default=1024, ge=1)
    spend_flush_interval: float = Field(default=1.0, gt=0)
    spend_queue_max: int = Field(default=100_000, ge=1)
    accounting: bool = True
    spend_log_retention_days: float = Field(default=30.0, ge=0)  # 0: keep every row
    rollup_retention_days: float = Field(default=400.0, ge=0)  # 0: keep every rollup
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    retention_interval: float = Field(default=3600.0, gt=0)

    ui: bool = True  # the web UI at /ui (needs master_key)
    ui_session_ttl: float = Field(default=8 * 3600.0, gt=0)
    ui_secure_cookies: bool = False  # always Secure; over https they are Secure anyway
    ui_login_attempts: int = Field(default=10, ge=1)  # per minute per client address

    redis_fail_mode: Literal["open", "closed"] = "open"
    redis_prefix: str = Field(default="passgate:", min_length=1, max_length=64)
    budget_estimate_usd: float = Field(default=0.0, ge=0)
    # output tokens a budget reserves for a call without max_tokens (capping the catalog's
    # max_output_tokens for the model)
    budget_output_tokens: int = Field(default=4096, ge=0)
    # several workers without Redis share their counters through the instance's limits
    # process; false keeps them per worker (each may let the full limit through)
    limits_process: bool = True

    webhook_url: str | None = None
    webhook_batch_size: int = Field(default=100, ge=1)
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "otlp_endpoint", "PASSGATE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    pricing: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # further OpenAI-compatible servers, each its own provider (config file only)
    compatible_servers: tuple[CompatibleServerSettings, ...] = Field(
        default=(), validation_alias=AliasChoices(COMPATIBLE_SECTION, "compatible_servers")
    )

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_upstreams(cls, data: Any) -> Any:
        sections = _BUILTIN_NAMES
        if not isinstance(data, dict) or not any(
            isinstance(k, str) and (_FLAT_UPSTREAM.fullmatch(k) or k in sections) for k in data
        ):
            return data
        data = dict(data)
        providers = {
            name: dict(value) if isinstance(value, dict) else value
            for name, value in (data.get("providers") or {}).items()
        }
        # a provider's own section (``mistral: {deployments: [...]}``), as LiteLLM-style
        # config files write it
        for key in [k for k in data if isinstance(k, str) and k in sections]:
            section = data[key]
            entry = providers.setdefault(key, {})
            if isinstance(section, dict) and isinstance(entry, dict):
                entry.update(section)
                del data[key]
        for key in [k for k in data if isinstance(k, str) and _FLAT_UPSTREAM.fullmatch(k)]:
            match = _FLAT_UPSTREAM.fullmatch(key)
            assert match is not None
            entry = providers.setdefault(match[1], {})
            if isinstance(entry, dict):
                entry["api_" + match[2]] = data.pop(key)
        data["providers"] = providers
        return data

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: dict[str, UpstreamSettings]) -> dict[str, UpstreamSettings]:
        unknown = sorted(set(value) - _BUILTIN_NAMES)
        if unknown:
            known = ", ".join(sorted(_BUILTIN_NAMES))
            raise ValueError(f"unknown provider {unknown[0]!r} (known: {known})")
        for name, upstream in value.items():
            spec = spec_named(name)
            if upstream.deployments and spec is not None and not spec.pooled:
                raise ValueError(f"{name}: deployments are not supported for this provider")
        return value

    def deployments(self, provider: str) -> tuple[DeploymentEntry, ...]:
        """The deployments of a provider: its ``deployments`` list, else one named ``default``
        made of its base URL and key. A deployment without a base URL gets the provider's."""
        upstream = self.providers.get(provider)
        if upstream is None or not upstream.deployments:
            base, key = self.upstreams().get(provider, (None, None))
            return (DeploymentEntry(DEFAULT_DEPLOYMENT, base, key, 1.0, None, True),)
        primary = next((d.name for d in upstream.deployments if d.primary), None)
        primary = primary or upstream.deployments[0].name
        return tuple(
            DeploymentEntry(
                name=d.name,
                api_base=d.api_base or upstream.api_base,
                api_key=None if d.api_key is None else d.api_key.get_secret_value(),
                weight=d.weight,
                models=None if d.models is None else frozenset(d.models),
                primary=d.name == primary,
            )
            for d in upstream.deployments
        )

    def deployment_pricing(self) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """(provider, deployment) -> the prices set on that deployment."""
        return {
            (provider, d.name): d.pricing
            for provider, upstream in self.providers.items()
            for d in upstream.deployments
            if d.pricing
        }

    @field_validator("compatible_servers")
    @classmethod
    def _check_servers(
        cls, value: tuple[CompatibleServerSettings, ...]
    ) -> tuple[CompatibleServerSettings, ...]:
        names = {spec.name for spec in BUILTIN}
        prefixes: set[str] = set()
        for index, server in enumerate(value):
            entry = f"entry {index} ({server.name!r})"
            if server.name in names:
                raise ValueError(f"{entry}: the name is already a provider's")
            problem = prefix_problem(server.route, prefixes)
            if problem is not None:
                raise ValueError(f"{entry}: {problem}")
            names.add(server.name)
            prefixes.add(server.route)
        return value

    def upstreams(self) -> dict[str, tuple[str | None, str | None]]:
        """Provider name -> (base URL, key) as set; None where unset."""
        found = {
            name: (up.api_base, None if up.api_key is None else up.api_key.get_secret_value())
            for name, up in self.providers.items()
        }
        for server in self.compatible_servers:
            key = None if server.api_key is None else server.api_key.get_secret_value()
            found[server.name] = (server.api_base, key)
        return found

    def provider_keys(self) -> list[str]:
        """Every provider key set (to redact them from logs)."""
        keys = [up.api_key.get_secret_value() for up in self.providers.values() if up.api_key]
        keys += [
            d.api_key.get_secret_value()
            for up in self.providers.values()
            for d in up.deployments
            if d.api_key
        ]
        keys += [s.api_key.get_secret_value() for s in self.compatible_servers if s.api_key]
        return keys

    def provider_specs(self) -> tuple[ProviderSpec, ...]:
        """The built-in providers' specs, then one per named compatible server."""
        return with_servers(
            (s.name, s.route, s.api_base, s.credential_header) for s in self.compatible_servers
        )

    def all_pricing(self) -> dict[str, dict[str, Any]]:
        """The ``pricing:`` overrides with each compatible server's own prices, named
        ``<server>/<model>`` so that they apply to that server alone."""
        found = dict(self.pricing)
        for server in self.compatible_servers:
            for model, fields in server.pricing.items():
                found[f"{server.name}/{model}"] = fields
        return found

    @model_validator(mode="after")
    def _check_head_limits(self) -> Settings:
        if self.max_header_line_bytes > self.max_head_bytes:
            raise ValueError(
                "max_header_line_bytes (PASSGATE_MAX_HEADER_LINE_BYTES) must not exceed "
                "max_head_bytes (PASSGATE_MAX_HEAD_BYTES)"
            )
        return self

    @field_validator("upstream_client_key", "ssl_keyfile")
    @classmethod
    def _check_key_has_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        cert = (
            "upstream_client_cert" if info.field_name == "upstream_client_key" else "ssl_certfile"
        )
        if value is not None and info.data.get(cert) is None:
            raise ValueError(f"a key needs its certificate: set {env_name(cert)} too")
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
    "master_key": "PASSGATE_MASTER_KEY / LITELLM_MASTER_KEY",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "otlp_endpoint": "PASSGATE_OTLP_ENDPOINT",
}


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    return _ENV_NAMES.get(field, "PASSGATE_" + field.upper())


def upstream_env_names(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The environment names of a provider's base URL and of its key."""
    spec = spec_named(name)
    return ((), ()) if spec is None else (spec.base_env, spec.key_env)


def proxy_environment() -> dict[str, str]:
    """The egress proxy variables (``https_proxy``, ``no_proxy``, ...) as curl and httpx read
    them, keyed by scheme (``https``, ``http``, ``all``, ``no``): the standard library's reading."""
    # Imported here: urllib.request (with http.client) would cost every process that reads
    # settings memory, the server's supervisor included, which never calls this.
    from urllib.request import getproxies_environment

    return getproxies_environment()


def settings_json(settings: Settings) -> str:
    """``settings`` as JSON that ``Settings.model_validate_json`` reads back, secrets included."""
    return json.dumps(_plain(settings.model_dump()))


def _plain(value: Any) -> Any:
    """A dumped model's values as JSON takes them, secrets revealed."""
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    return value
