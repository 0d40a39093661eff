"""Entry point for server workers: build the app from the environment (and ``--config``)."""

from __future__ import annotations

from passgate.api.app import build_app
from passgate.api.gateway import Gateway
from passgate.config import Settings, config_file_from_env, load_settings
from passgate.observability.logs import configure_logging


def setup_process_logging(settings: Settings) -> None:
    """JSON logs for this process, with the master and provider keys redacted."""
    secrets = [s.get_secret_value() for s in (settings.master_key, settings.mistral_api_key) if s]
    configure_logging(settings.log_level, secrets=secrets)


def app_from_env() -> Gateway:
    """The gateway for this worker process, from env vars and the config file."""
    settings = load_settings(config_file_from_env())
    setup_process_logging(settings)
    return build_app(settings)
