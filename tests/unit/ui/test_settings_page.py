"""The settings page's rows: secrets only as set / not set, deployments included."""

from __future__ import annotations

from typing import cast

from passgate.config import Settings
from passgate.ui.context import UiContext
from passgate.ui.views_pages import public_settings


class Holder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def test_deployments_are_shown_without_their_keys() -> None:
    settings = Settings.model_validate(
        {
            "mistral": {
                "api_base": "https://user:pw@eu.example.com/v1",
                "deployments": [
                    {"name": "a", "api_key": "key-a-secret", "weight": 3},
                    {"name": "local", "api_base": "http://vllm.internal:8000/v1"},
                ],
            }
        }
    )
    rows = dict(public_settings(cast(UiContext, Holder(settings))))
    assert rows["mistral deployment a"] == "https://eu.example.com, weight 3, key set"
    assert rows["mistral deployment local"] == "http://vllm.internal:8000, weight 1, key not set"
    assert not any("key-a-secret" in v or "pw" in v for v in rows.values())
