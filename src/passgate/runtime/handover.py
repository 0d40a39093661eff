"""How the validated settings reach the server, its workers and its spend writer: never in
an environment variable, a command line or a named file.

The settings carry the master key and the provider key. A process's environment is
readable by every process of its user (``/proc/PID/environ``), is inherited by whatever
it starts, and stays as it was at ``exec`` for the process's whole life; so:

- ``passgate`` writes the settings into an unnamed temporary file (``hand_over``), keeps
  its descriptor open across the ``exec`` that makes it the server, and passes only the
  descriptor's number (``--settings-fd``); the server reads and closes it at once
  (``handed_settings``). The spend writer is started the same way, with a new file each
  time it is started or restarted. The variables that could carry a secret are removed
  from the environment the server is started with (``secret_free_environ``).
- uvicorn starts each worker (and each worker it restarts) by pickling its ``Config`` to
  the spawned process over their pipe. The config's app is a ``WorkerApp``: the settings
  and the instance's paths travel inside it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr, ValidationError
from uvicorn.importer import import_from_string

from passgate.config import Settings, SettingsError, settings_json
from passgate.providers.registry import BUILTIN

SETTINGS_FD_OPTION = "--settings-fd"
# settings whose values may carry a credential: a key, or a URL with a password in it
_SECRET_FIELDS = (
    "master_key",
    "database_url",
    "redis_url",
    "webhook_url",
    "upstream_proxy",
)


def hand_over_text(text: str) -> int:
    """An inheritable descriptor of an unnamed file holding ``text``, read from its start."""
    with tempfile.TemporaryFile() as file:  # never named where O_TMPFILE exists, else unlinked
        file.write(text.encode())
        file.flush()
        fd = os.dup(file.fileno())
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd


def hand_over(settings: Settings) -> int:
    """An inheritable descriptor from which a started process reads ``settings`` (secrets
    included) with ``handed_settings``; the caller closes its copy once that process runs."""
    return hand_over_text(settings_json(settings))


def handed_settings(fd: int) -> Settings:
    """The settings ``hand_over`` wrote to ``fd``, which is read to its end and closed."""
    try:
        with open(fd, "rb") as file:
            text = file.read()
    except OSError as exc:
        raise SettingsError(f"cannot read the settings handed over ({exc.strerror})") from None
    try:
        return Settings.model_validate_json(text)
    except ValidationError:
        # pydantic's message quotes the input, and the input holds the keys
        raise SettingsError("the settings handed over are not valid") from None


def _secret_variables() -> frozenset[str]:
    names: set[str] = set()
    for field in _SECRET_FIELDS:
        alias = Settings.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        names.add(f"PASSGATE_{field.upper()}")
    for spec in BUILTIN:  # every provider's key variables
        names.update(name.upper() for name in spec.key_env)
    return frozenset(names)


def secret_values(settings: Settings) -> frozenset[str]:
    """The credentials ``settings`` hold: the master and provider keys, and every setting that
    may carry one (a URL with a password in it)."""
    values = set(settings.provider_keys())
    for field in _SECRET_FIELDS:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value:
            values.add(str(value))
    return frozenset(values)


def secret_free_environ(
    environ: Mapping[str, str], secrets: Collection[str] = frozenset()
) -> dict[str, str]:
    """``environ`` without the variables that set a credential (names compared as
    pydantic-settings compares them: case-insensitively), nor any whose value is one of
    ``secrets``: the config file may name a key's variable by any name (``os.environ/NAME``)."""
    secret = _secret_variables()
    return {
        name: value
        for name, value in environ.items()
        if name.upper() not in secret and value not in secrets
    }


@dataclass(frozen=True, slots=True)
class WorkerApp:
    """The app factory uvicorn runs in a worker, with what the server hands that worker.

    ``factory`` names a function taking this object and returning the ASGI app; it is
    imported only when called, in the worker (see ``passgate.runtime.server.app_factory``).
    """

    factory: str
    settings: Settings
    spend_socket: str | None = None
    metrics_dir: Path | None = None
    limits_socket: str | None = None

    def __call__(self) -> Any:
        """Build this worker's app."""
        build: Callable[[WorkerApp], Any] = import_from_string(self.factory)
        return build(self)
