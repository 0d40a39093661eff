"""The shipped price catalog, aliases, overrides from the config file, and cost arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from passgate.accounting.pricing import (
    Catalog,
    Price,
    PricingError,
    load_catalog,
    parse_catalog,
)
from passgate.exchange import Usage
from passgate.settings_env import load_settings

M = 1_000_000

# Mistral's list prices in USD, typed in by hand from shared/mistral/README.md
# (name, aliases, input/M tok, output/M tok, cached/M tok, per 1000 pages,
#  per 1000 annotated pages, per audio minute, per M characters)
README_TABLE: list[
    tuple[str, tuple[str, ...], float, float, float | None, float, float | None, float, float]
] = [
    ("mistral-large-2512", ("mistral-large-latest",), 0.5, 1.5, None, 0, None, 0, 0),
    (
        "mistral-medium-3-5",
        ("mistral-medium-3", "mistral-medium-latest"),
        1.5,
        7.5,
        None,
        0,
        None,
        0,
        0,
    ),
    ("mistral-small-2603", ("mistral-small-latest",), 0.15, 0.6, None, 0, None, 0, 0),
    ("ministral-14b-2512", ("ministral-14b-latest",), 0.2, 0.2, None, 0, None, 0, 0),
    ("ministral-8b-2512", ("ministral-8b-latest",), 0.15, 0.15, None, 0, None, 0, 0),
    ("ministral-3b-2512", ("ministral-3b-latest",), 0.1, 0.1, None, 0, None, 0, 0),
    ("codestral-2508", ("codestral-latest",), 0.3, 0.9, None, 0, None, 0, 0),
    ("mistral-embed-2312", ("mistral-embed",), 0.1, 0, None, 0, None, 0, 0),
    ("codestral-embed-2505", ("codestral-embed",), 0.15, 0, None, 0, None, 0, 0),
    ("mistral-ocr-4-1", ("mistral-ocr-4", "mistral-ocr-latest"), 0, 0, None, 4.0, 5.0, 0, 0),
    ("mistral-ocr-4-0", (), 0, 0, None, 4.0, 5.0, 0, 0),
    ("mistral-ocr-2512", (), 0, 0, None, 2.0, 3.0, 0, 0),
    ("voxtral-mini-2602", ("voxtral-mini-latest",), 0, 0, None, 0, None, 0.003, 0),
    ("voxtral-mini-transcribe-realtime-2602", (), 0, 0, None, 0, None, 0.006, 0),
    ("voxtral-small-2507", ("voxtral-small-latest",), 0.1, 0.4, None, 0, None, 0.004, 0),
    ("voxtral-mini-tts-2603", ("voxtral-mini-tts-latest",), 0, 0, None, 0, None, 0, 16.0),
    ("mistral-moderation-2603", (), 0, 0, None, 0, None, 0, 0),
    ("zai-glm-5-2", (), 1.4, 4.4, 0.14, 0, None, 0, 0),
    ("labs-leanstral-1-5", (), 0, 0, None, 0, None, 0, 0),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize("row", README_TABLE, ids=[row[0] for row in README_TABLE])
def test_every_readme_row_is_in_the_catalog_at_its_list_price(catalog: Catalog, row: Any) -> None:
    name, aliases, inp, out, cached, page, annotated, minute, chars = row
    price = catalog.lookup(name)
    assert price is not None
    assert price.input_per_token == pytest.approx(inp / M, rel=1e-12, abs=0)
    assert price.output_per_token == pytest.approx(out / M, rel=1e-12, abs=0)
    if cached is None:
        assert price.cached_input_per_token is None
    else:
        assert price.cached_input_per_token == pytest.approx(cached / M, rel=1e-12)
    assert price.per_page == pytest.approx(page / 1000, rel=1e-12, abs=0)
    if annotated is None:
        assert price.per_annotated_page is None
    else:
        assert price.per_annotated_page == pytest.approx(annotated / 1000, rel=1e-12)
    assert price.per_audio_second * 60 == pytest.approx(minute, rel=1e-12, abs=0)
    assert price.per_character == pytest.approx(chars / M, rel=1e-12, abs=0)
    for alias in aliases:
        assert catalog.lookup(alias) is price
        assert catalog.resolve(alias) == name


def test_the_catalog_holds_nothing_but_the_readme_rows(catalog: Catalog) -> None:
    expected = {name for name, *_ in README_TABLE}
    expected |= {alias for _, aliases, *_ in README_TABLE for alias in aliases}
    expected.add("mistral-moderation-latest")  # the one alias inferred (see prices.json notes)
    assert set(catalog.models()) == expected


def test_every_shipped_entry_names_its_source_and_date() -> None:
    path = Path(__file__).resolve().parents[3] / "src/passgate/providers/prices/mistral.json"
    document = orjson.loads(path.read_bytes())
    for name, entry in document["models"].items():
        assert entry["source"].startswith("https://github.com/mistralai/platform-docs-public"), name
        assert entry["date"] == "2026-08-21", name
    assert set(document["aliases"].values()) <= set(document["models"])


def test_unknown_and_missing_models_have_no_price(catalog: Catalog) -> None:
    assert catalog.lookup("gpt-4o") is None
    assert catalog.lookup("") is None
    assert catalog.lookup(None) is None
    assert catalog.lookup("MISTRAL-SMALL-LATEST") is None  # names are exact, as upstream


def test_token_cost_is_price_times_tokens(catalog: Catalog) -> None:
    price = catalog.lookup("mistral-large-latest")
    assert price is not None
    usage = Usage(prompt_tokens=1000, completion_tokens=250, total_tokens=1250)
    assert price.cost(usage) == pytest.approx(1000 * 0.5 / M + 250 * 1.5 / M)


@pytest.mark.parametrize(
    "usage",
    [
        Usage(prompt_tokens=1000, completion_tokens=250, total_tokens=1250),
        Usage(prompt_tokens=7, cached_tokens=0),
        Usage(completion_tokens=3),
        Usage(total_tokens=9),
    ],
)
def test_token_only_usage_costs_exactly_the_full_sum(catalog: Catalog, usage: Usage) -> None:
    # the token-only shortcut must give the very float the sum of every rate gives
    price = catalog.lookup("zai-glm-5-2")
    assert price is not None and price.cached_input_per_token is not None
    prompt = usage.prompt_tokens or 0
    full = (
        prompt * price.input_per_token
        + 0 * price.cached_input_per_token
        + (usage.completion_tokens or 0) * price.output_per_token
        + 0 * price.per_page
        + 0 * price.per_page
        + 0.0 * price.per_audio_second
        + 0 * price.per_character
    )
    assert price.cost(usage) == full


def test_cached_tokens_use_the_cached_rate_or_else_the_input_rate(catalog: Catalog) -> None:
    glm = catalog.lookup("zai-glm-5-2")
    small = catalog.lookup("mistral-small-latest")
    assert glm is not None and small is not None
    usage = Usage(prompt_tokens=1000, completion_tokens=10, cached_tokens=400)
    assert glm.cost(usage) == pytest.approx(600 * 1.4 / M + 400 * 0.14 / M + 10 * 4.4 / M)
    assert small.cost(usage) == pytest.approx(1000 * 0.15 / M + 10 * 0.6 / M)
    # a report of more cached than prompt tokens cannot make the cost negative
    assert glm.cost(Usage(prompt_tokens=5, cached_tokens=50)) == pytest.approx(5 * 0.14 / M)


def test_ocr_pages_and_annotated_pages(catalog: Catalog) -> None:
    price = catalog.lookup("mistral-ocr-2512")
    assert price is not None
    assert price.cost(Usage(pages=7, annotated_pages=0)) == pytest.approx(7 * 0.002)
    assert price.cost(Usage(pages=7, annotated_pages=7)) == pytest.approx(7 * 0.003)
    assert price.cost(Usage(pages=7, annotated_pages=2)) == pytest.approx(5 * 0.002 + 2 * 0.003)


def test_audio_seconds_and_characters(catalog: Catalog) -> None:
    mini = catalog.lookup("voxtral-mini-latest")
    small = catalog.lookup("voxtral-small-latest")
    tts = catalog.lookup("voxtral-mini-tts-latest")
    assert mini is not None and small is not None and tts is not None
    usage = Usage(prompt_tokens=100, completion_tokens=50, audio_seconds=90)
    assert mini.cost(usage) == pytest.approx(1.5 * 0.003)  # transcription bills audio only
    assert small.cost(usage) == pytest.approx(1.5 * 0.004 + 100 * 0.1 / M + 50 * 0.4 / M)
    assert tts.cost(Usage(characters=12_345)) == pytest.approx(12_345 * 16.0 / M)


def test_free_models_and_empty_usage(catalog: Catalog) -> None:
    moderation = catalog.lookup("mistral-moderation-latest")
    large = catalog.lookup("mistral-large-latest")
    assert moderation is not None and large is not None
    assert moderation.free and not large.free
    assert moderation.cost(Usage(prompt_tokens=10_000)) == 0.0
    assert large.cost(Usage()) == 0.0


def test_a_custom_model_is_added_with_zero_defaults(catalog: Catalog) -> None:
    custom = catalog.with_overrides(
        {"qwen2.5-7b-instruct": {"input_cost_per_token": 0, "output_cost_per_token": 0}}
    )
    price = custom.lookup("qwen2.5-7b-instruct")
    assert price is not None and price.free and price.source == "config"
    assert price.cost(Usage(prompt_tokens=10, completion_tokens=20)) == 0.0
    assert catalog.lookup("qwen2.5-7b-instruct") is None  # the original is not changed
    priced = catalog.with_overrides({"my-model": {"output_cost_per_token": 2e-6}})
    assert priced.lookup("my-model") == Price(output_per_token=2e-6, source="config")


def test_overriding_a_catalog_model_keeps_the_fields_it_does_not_name(catalog: Catalog) -> None:
    custom = catalog.with_overrides({"zai-glm-5-2": {"output_cost_per_token": 1e-6}})
    price = custom.lookup("zai-glm-5-2")
    assert price is not None
    assert price.output_per_token == 1e-6
    assert price.input_per_token == pytest.approx(1.4 / M)
    assert price.cached_input_per_token == pytest.approx(0.14 / M)
    assert price.source == "config"


def test_an_override_names_a_models_max_output_tokens(catalog: Catalog) -> None:
    custom = catalog.with_overrides({"mistral-small-latest": {"max_output_tokens": 8192}})
    price = custom.lookup("mistral-small-latest")
    assert price is not None and price.max_output_tokens == 8192
    shipped = catalog.lookup("mistral-small-latest")
    assert shipped is not None and shipped.max_output_tokens is None
    assert price.input_per_token == shipped.input_per_token


def test_overriding_an_alias_prices_that_name_only(catalog: Catalog) -> None:
    custom = catalog.with_overrides({"mistral-large-latest": {"input_cost_per_token": 9e-7}})
    latest = custom.lookup("mistral-large-latest")
    dated = custom.lookup("mistral-large-2512")
    assert latest is not None and dated is not None
    assert latest.input_per_token == 9e-7
    assert latest.output_per_token == pytest.approx(1.5 / M)
    assert dated.input_per_token == pytest.approx(0.5 / M)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input_cost_per_tokens": 1}, "unknown field 'input_cost_per_tokens'"),
        ({"input_cost_per_token": -1}, "finite number >= 0"),
        ({"input_cost_per_token": float("nan")}, "finite number >= 0"),
        ({"input_cost_per_token": "0.1"}, "must be a number"),
        ({"input_cost_per_token": True}, "must be a number"),
        ({"input_cost_per_token": None}, "cannot be null"),
        ({"max_output_tokens": 0}, "whole number >= 1"),
        ({"max_output_tokens": 1.5}, "whole number >= 1"),
        ({"max_output_tokens": True}, "whole number >= 1"),
    ],
)
def test_bad_overrides_are_refused_naming_the_model(
    catalog: Catalog, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(PricingError, match=message) as caught:
        catalog.with_overrides({"my-model": fields})
    assert "'my-model'" in str(caught.value)


def test_an_override_that_is_not_a_mapping_is_refused(catalog: Catalog) -> None:
    with pytest.raises(PricingError, match="must be a mapping"):
        catalog.with_overrides({"my-model": 0.1})  # type: ignore[dict-item]


def test_nullable_rates_fall_back_to_the_base_rate(catalog: Catalog) -> None:
    custom = catalog.with_overrides({"zai-glm-5-2": {"cache_read_input_token_cost": None}})
    price = custom.lookup("zai-glm-5-2")
    assert price is not None
    assert price.cost(Usage(prompt_tokens=10, cached_tokens=10)) == pytest.approx(10 * 1.4 / M)


def test_a_malformed_catalog_is_refused() -> None:
    with pytest.raises(PricingError, match="'models' object"):
        parse_catalog([])
    with pytest.raises(PricingError, match="has no price"):
        parse_catalog({"models": {}, "aliases": {"a-latest": "a-1"}})


def test_pricing_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "passgate.yaml"
    config.write_text(
        "pricing:\n"
        "  qwen2.5-7b-instruct:\n"
        "    input_cost_per_token: 0\n"
        "    output_cost_per_token: 0\n"
        "  mistral-small-latest:\n"
        "    input_cost_per_token: 1.0e-7\n",
        encoding="utf-8",
    )
    catalog = load_catalog(load_settings(config).pricing)
    qwen = catalog.lookup("qwen2.5-7b-instruct")
    small = catalog.lookup("mistral-small-latest")
    assert qwen is not None and qwen.free
    assert small is not None
    assert small.cost(Usage(prompt_tokens=10, completion_tokens=20)) == pytest.approx(
        10 * 1e-7 + 20 * 0.6 / M
    )
