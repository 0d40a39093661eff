"""Deployments in the settings: the config file's format, its checks and their messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from passgate.config import SettingsError
from passgate.runtime.cli import main
from passgate.settings_env import load_settings

DEPLOYMENTS = """
mistral:
  deployments:
    - name: workspace-a
      api_key: os.environ/TEST_DEP_KEY_A
      weight: 3
    - name: workspace-b
      api_key: os.environ/TEST_DEP_KEY_B
      api_base: https://eu.example.com/v1
      primary: true
    - name: local-vllm
      api_base: http://vllm.internal:8000/v1
      models: [my-finetune]
      pricing:
        my-finetune: {input_cost_per_token: 0, output_cost_per_token: 0}
"""


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DEP_KEY_A", "key-a-secret")
    monkeypatch.setenv("TEST_DEP_KEY_B", "key-b-secret")
    monkeypatch.setenv("MISTRAL_API_BASE", "http://base.example")
    monkeypatch.setenv("MISTRAL_API_KEY", "provider-key-secret")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "passgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_format_is_read(tmp_path: Path, keys: None) -> None:
    settings = load_settings(write(tmp_path, DEPLOYMENTS))
    a, b, local = settings.deployments("mistral")
    assert (a.name, a.api_base, a.api_key, a.weight, a.primary) == (
        "workspace-a",
        "http://base.example",  # MISTRAL_API_BASE when the entry names none
        "key-a-secret",
        3.0,
        False,
    )
    assert (b.api_base, b.api_key, b.primary) == ("https://eu.example.com/v1", "key-b-secret", True)
    assert local.api_key is None  # never MISTRAL_API_KEY: a deployment's key is its own
    assert local.models == frozenset({"my-finetune"})
    assert settings.deployment_pricing() == {
        ("mistral", "local-vllm"): {
            "my-finetune": {"input_cost_per_token": 0, "output_cost_per_token": 0}
        }
    }
    assert {"key-a-secret", "key-b-secret", "provider-key-secret"} <= set(settings.provider_keys())


def test_the_first_entry_is_the_primary_by_default(tmp_path: Path, keys: None) -> None:
    text = DEPLOYMENTS.replace("      primary: true\n", "")
    first, *rest = load_settings(write(tmp_path, text)).deployments("mistral")
    assert first.primary and not any(d.primary for d in rest)


def test_without_a_list_one_default_deployment(keys: None) -> None:
    (only,) = load_settings().deployments("mistral")
    assert (only.name, only.api_base, only.api_key, only.primary) == (
        "default",
        "http://base.example",
        "provider-key-secret",
        True,
    )


def test_the_list_may_sit_in_the_providers_section(tmp_path: Path, keys: None) -> None:
    text = "providers:\n" + "\n".join("  " + line for line in DEPLOYMENTS.splitlines())
    names = [d.name for d in load_settings(write(tmp_path, text)).deployments("mistral")]
    assert names == ["workspace-a", "workspace-b", "local-vllm"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("TEST_DEP_KEY_B", ""),
            "mistral.deployments['workspace-b'].api_key: the config file "
            "names TEST_DEP_KEY_B, which is not set",
        ),
        (("name: local-vllm", "name: workspace-a"), "deployment 'workspace-a' is named twice"),
        (("http://vllm.internal:8000/v1", "ftp://vllm"), "'local-vllm'.api_base"),
        (("weight: 3", "weight: 0"), "'workspace-a'.weight"),
        (("name: local-vllm", "name: 'bad name'"), "deployments 'bad name'.name"),
        (("      models: [my-finetune]\n", "      primary: true\n"), "at most one deployment"),
        (("input_cost_per_token: 0,", "input_cost_per_tokn: 0,"), "local-vllm"),
    ],
)
def test_a_bad_deployment_stops_the_start_naming_it(
    tmp_path: Path,
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str],
    message: str,
) -> None:
    old, new = change
    text = DEPLOYMENTS
    if old.startswith("TEST_"):
        monkeypatch.delenv(old)
    else:
        assert old in text
        text = text.replace(old, new, 1)
    code = main(["--config", str(write(tmp_path, text)), "--check-config"])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "key-a-secret" not in err


def test_deployments_are_refused_where_resources_are_not_followed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="anthropic: deployments are not supported"):
        load_settings(write(tmp_path, "anthropic:\n  deployments:\n    - name: a\n"))


def test_check_config_shows_deployments_without_keys(
    tmp_path: Path, keys: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(write(tmp_path, DEPLOYMENTS)), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "configuration is valid" in out
    assert "  workspace-a: http://base.example, weight 3, all models, key set" in out
    assert "  workspace-b: https://eu.example.com, weight 1, all models, key set, primary" in out
    assert "  local-vllm: http://vllm.internal:8000, weight 1, my-finetune, no key" in out
    for secret in ("key-a-secret", "key-b-secret", "provider-key-secret"):
        assert secret not in out
