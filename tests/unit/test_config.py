from pathlib import Path

import pytest

from passgate.config import SettingsError
from passgate.providers.registry import enabled
from passgate.settings_env import load_settings


def test_empty_env_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_MASTER_KEY", "")
    monkeypatch.setenv("MISTRAL_API_BASE", "")
    monkeypatch.delenv("PASSGATE_MASTER_KEY", raising=False)
    settings = load_settings()
    assert settings.master_key is None
    assert enabled(settings.upstreams())[0].origin == "https://api.mistral.ai"


def test_litellm_master_key_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASSGATE_MASTER_KEY", raising=False)
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-1234")
    settings = load_settings()
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == "sk-1234"
    assert "sk-1234" not in repr(settings)


def test_yaml_overrides_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_BASE", "http://env:1")
    config = tmp_path / "passgate.yaml"
    config.write_text("mistral_api_base: http://yaml:2\nfirst_byte_timeout: 7\n")
    settings = load_settings(config)
    assert settings.upstreams()["mistral"] == ("http://yaml:2", None)
    assert settings.first_byte_timeout == 7


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("MISTRAL_API_BASE", "ftp://x", "MISTRAL_API_BASE"),
        ("PASSGATE_PORT", "0", "PASSGATE_PORT"),
        ("PASSGATE_KEY_CACHE_TTL", "60", "PASSGATE_KEY_CACHE_TTL"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
    ],
)
def test_invalid_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_unknown_yaml_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "passgate.yaml"
    config.write_text("no_such_setting: 1\n")
    with pytest.raises(SettingsError, match="no_such_setting"):
        load_settings(config)
