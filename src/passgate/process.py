"""What every passgate process (the command, the server, each worker) sets up for itself."""

from __future__ import annotations

from passgate.config import Settings
from passgate.observability.logs import configure_logging


def setup_process_logging(settings: Settings) -> None:
    """JSON logs for this process, with the master and provider keys redacted."""
    secrets = [s.get_secret_value() for s in (settings.master_key, settings.mistral_api_key) if s]
    configure_logging(settings.log_level, secrets=secrets)
