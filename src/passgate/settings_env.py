"""Settings read from the environment, then a YAML file, then explicit overrides.

pydantic-settings reads the environment. An empty variable counts as unset, so the
seed's ``export LITELLM_MASTER_KEY=""`` means "no master key", not "the empty key".
Only the ``passgate`` command and embedders (tests, a program building the app itself)
import this module: the server, its workers and its spend writer get the validated
settings from ``passgate.runtime.handover``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from passgate.config import Settings, SettingsError, env_name, upstream_env_names
from passgate.providers.registry import BUILTIN


class EnvSettings(Settings, BaseSettings):
    """``Settings`` whose unset fields are read from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="PASSGATE_",
        env_ignore_empty=True,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


def _deployment_name(values: dict[str, Any], provider: str, index: int) -> str:
    """A deployment's name as the config file gives it (its position when it has none)."""
    for section in ((values.get("providers") or {}).get(provider), values.get(provider)):
        entries = section.get("deployments") if isinstance(section, dict) else None
        if isinstance(entries, list) and index < len(entries):
            entry = entries[index]
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                return repr(entry["name"])
    return f"entry {index}"


def _describe(error: ValidationError, values: dict[str, Any]) -> str:
    lines = []
    for item in error.errors():
        loc = item["loc"]
        field = str(loc[0]) if loc else "?"
        name = field if field.isupper() else f"{field} ({env_name(field)})"
        if len(loc) >= 2 and isinstance(loc[1], int):
            # an entry of a list given in the config file: name it by position and field
            name = f"{field} entry {loc[1]}" + "".join(f".{part}" for part in loc[2:])
        if field == "providers" and len(loc) >= 3 and loc[2] == "deployments":
            name = f"{loc[1]}.deployments"
            if len(loc) >= 4 and isinstance(loc[3], int):
                name += f" {_deployment_name(values, str(loc[1]), loc[3])}"
                name += "".join(f".{part}" for part in loc[4:])
        elif field == "providers" and len(loc) >= 3:
            bases, keys = upstream_env_names(str(loc[1]))
            names = bases if loc[2] == "api_base" else keys
            name = f"{loc[1]}_{loc[2]}" + (f" ({' / '.join(names)})" if names else "")
        lines.append(f"invalid setting {name}: {item['msg']}")
    return "; ".join(lines)


_ENV_REFERENCE = "os.environ/"  # LiteLLM's way of naming a variable in the config file


def _environment_value(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:  # an empty variable counts as unset
            return value
    return None


def _upstreams_from_environment() -> dict[str, dict[str, str]]:
    """Each built-in provider's base URL and key from its environment names, where set."""
    found: dict[str, dict[str, str]] = {}
    for spec in BUILTIN:
        for field, names in (("api_base", spec.base_env), ("api_key", spec.key_env)):
            value = _environment_value(names)
            if value is not None:
                found.setdefault(spec.name, {})[field] = value
    return found


def _resolve_references(value: Any, where: str = "") -> Any:
    """``os.environ/NAME`` (in the config file's entries, lists of entries included) -> that
    variable's value; a variable not set stops with the entry's place (a deployment by name)."""
    if isinstance(value, dict):
        return {
            key: _resolve_references(item, f"{where}.{key}" if where else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _resolve_references(item, f"{where}[{_entry_name(item, index)}]")
            for index, item in enumerate(value)
        ]
    if isinstance(value, str) and value.startswith(_ENV_REFERENCE):
        name = value[len(_ENV_REFERENCE) :]
        found = os.environ.get(name)
        if not found:
            place = f"{where}: " if where else ""
            raise SettingsError(f"{place}the config file names {name}, which is not set")
        return found
    return value


def _entry_name(item: Any, index: int) -> str:
    """How an entry of a list is named in a message: by its ``name``, else its position."""
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return repr(item["name"])
    return str(index)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from env, then the YAML file, then explicit overrides."""
    values: dict[str, Any] = {}
    providers: dict[str, Any] = _upstreams_from_environment()
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
        configured = loaded.pop("providers", None)
        if configured is not None:
            if not isinstance(configured, dict):
                raise SettingsError("'providers' in the config file must map names to settings")
            for name, entry in _resolve_references(configured, "providers").items():
                if not isinstance(entry, dict):
                    raise SettingsError(f"providers.{name} in the config file must be a mapping")
                providers[name] = {**providers.get(name, {}), **entry}
        values.update(_resolve_references(loaded))
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["providers"] = {**providers, **values.get("providers", {})}
    try:
        return EnvSettings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, values)) from None
