"""Settings read from the environment, then a YAML file, then explicit overrides.

pydantic-settings reads the environment. An empty variable counts as unset, so the
seed's ``export LITELLM_MASTER_KEY=""`` means "no master key", not "the empty key".
Only the ``passgate`` command and embedders (tests, a program building the app itself)
import this module: the server, its workers and its spend writer get the validated
settings from ``passgate.runtime.handover``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from passgate.config import Settings, SettingsError, env_name


class EnvSettings(Settings, BaseSettings):
    """``Settings`` whose unset fields are read from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="PASSGATE_",
        env_ignore_empty=True,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


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
        return EnvSettings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
