"""Entry point for server workers: build the app from the environment (and ``--config``)."""

from __future__ import annotations

from passgate.api.app import build_app
from passgate.api.gateway import Gateway
from passgate.config import config_file_from_env, load_settings


def app_from_env() -> Gateway:
    """The gateway for this worker process, from env vars and the config file."""
    return build_app(load_settings(config_file_from_env()))
