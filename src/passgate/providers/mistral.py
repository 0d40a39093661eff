"""Mistral: base URL from ``MISTRAL_API_BASE``, bearer credential from ``MISTRAL_API_KEY``."""

from __future__ import annotations

from passgate.config import Settings
from passgate.providers.base import Provider, split_base

NAME = "mistral"


def mistral_provider(settings: Settings) -> Provider:
    """The Mistral upstream described by the settings."""
    origin, base_path = split_base(settings.mistral_api_base)
    key = settings.mistral_api_key
    credential = None if key is None else ("Authorization", "Bearer " + key.get_secret_value())
    return Provider(name=NAME, origin=origin, base_path=base_path, credential=credential)
