"""Named OpenAI-compatible servers declared in the config file: parsing, the errors that stop
the start (each naming its entry), and what they become (specs, upstreams, prices, keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from passgate.accounting.pricing import PricingError, load_catalogs
from passgate.config import Settings, SettingsError, settings_json
from passgate.providers.registry import enabled
from passgate.runtime.cli import check_prices
from passgate.settings_env import load_settings

OLLAMA = """\
openai_compatible:
  - name: ollama
    api_base: http://127.0.0.1:11434/api
    api_key: os.environ/OLLAMA_TEST_KEY
    credential_header: X-Api-Key
    pricing:
      llama3: {input_cost_per_token: 0.000002, output_cost_per_token: 0.000004}
  - name: sglang
    prefix: /sg
    api_base: http://127.0.0.1:30000
"""


def settings_from(tmp_path: Path, text: str) -> Settings:
    config = tmp_path / "passgate.yaml"
    config.write_text(text, encoding="utf-8")
    return load_settings(config)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OLLAMA_TEST_KEY", "ollama-secret-key")
    return settings_from(tmp_path, OLLAMA)


def test_servers_become_providers_with_their_prefix_base_and_credential(
    settings: Settings,
) -> None:
    specs = settings.provider_specs()
    served = {p.name: p for p in enabled(settings.upstreams(), specs)}
    ollama, sglang = served["ollama"], served["sglang"]
    assert ollama.spec.prefix == b"/ollama" and sglang.spec.prefix == b"/sg"
    assert (ollama.origin, ollama.base_path) == ("http://127.0.0.1:11434", b"/api")
    assert ollama.credential == ("X-Api-Key", "ollama-secret-key")
    assert sglang.credential is None  # no key: none is sent
    assert "ollama-secret-key" in settings.provider_keys()  # redacted from logs
    assert "ollama-secret-key" not in repr(settings)


def test_a_servers_prices_apply_to_it_alone(settings: Settings) -> None:
    catalogs = load_catalogs(settings.all_pricing(), settings.provider_specs())
    price = catalogs.lookup("ollama", "llama3")
    assert price is not None and price.input_per_token == 0.000002
    assert catalogs.lookup("sglang", "llama3") is None
    assert catalogs.lookup("vllm", "llama3") is None
    check_prices(settings)


def test_the_settings_survive_the_handover(settings: Settings) -> None:
    again = Settings.model_validate_json(settings_json(settings))
    assert again.upstreams() == settings.upstreams()
    assert [s.name for s in again.provider_specs()] == [s.name for s in settings.provider_specs()]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: ollama, prefix: /key, api_base: 'http://h'}", r"entry 0 \('ollama'\).*own routes"),
        ("{name: ollama, prefix: /openai, api_base: 'http://h'}", r"entry 0.*already a provider"),
        ("{name: vllm, prefix: /v2, api_base: 'http://h'}", r"entry 0 \('vllm'\).*already a"),
        ("{name: ollama, prefix: 'a/b', api_base: 'http://h'}", r"entry 0.*one path segment"),
        ("{name: Ollama!, api_base: 'http://h'}", r"entry 0\.name"),
        ("{name: ollama, api_base: 'ftp://h'}", r"entry 0\.api_base"),
        ("{name: ollama}", r"entry 0\.api_base"),
        ("{name: ollama, api_base: 'http://h', credential_header: 'x y'}", r"credential_header"),
        ("{name: ollama, api_base: 'http://h', colour: red}", r"entry 0\.colour"),
    ],
)
def test_a_bad_entry_stops_the_start_naming_it(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from(tmp_path, f"openai_compatible:\n  - {entry}\n")


def test_two_servers_may_not_share_a_name_or_prefix(tmp_path: Path) -> None:
    text = (
        "openai_compatible:\n"
        "  - {name: a, api_base: 'http://h'}\n"
        "  - {name: b, prefix: /a, api_base: 'http://h'}\n"
    )
    with pytest.raises(SettingsError, match=r"entry 1 \('b'\).*already a provider"):
        settings_from(tmp_path, text)


def test_a_missing_key_variable_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OLLAMA_TEST_KEY", raising=False)
    with pytest.raises(SettingsError, match="OLLAMA_TEST_KEY"):
        settings_from(tmp_path, OLLAMA)


def test_a_bad_price_names_its_server(tmp_path: Path) -> None:
    text = (
        "openai_compatible:\n"
        "  - name: ollama\n"
        "    api_base: http://h\n"
        "    pricing: {llama3: {input_cost_per_token: lots}}\n"
    )
    with pytest.raises(PricingError, match=r"openai_compatible entry 'ollama'.*llama3"):
        check_prices(settings_from(tmp_path, text))
