"""The pricing catalog: list prices shipped with the package, plus the config's overrides.

Prices are in USD per unit and use LiteLLM's field names, so a price copied from
``model_prices_and_context_window.json`` works in the config file unchanged::

    pricing:
      qwen2.5-7b-instruct: {input_cost_per_token: 0, output_cost_per_token: 0}
      mistral-large-latest: {input_cost_per_token: 4.0e-7}

An override of a catalog model (or alias) starts from that model's price and changes
the fields it names; any other name adds a custom model whose missing fields are 0.
``max_output_tokens`` (LiteLLM's name too) is not a price: it is the most output one
call of the model can produce, which a budget reserves for a call without ``max_tokens``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import orjson

from passgate.exchange import Usage
from passgate.providers.base import ProviderSpec
from passgate.providers.registry import BUILTIN

# price field (LiteLLM's name) -> attribute of Price
_FIELDS = {
    "input_cost_per_token": "input_per_token",
    "output_cost_per_token": "output_per_token",
    "cache_read_input_token_cost": "cached_input_per_token",
    "cache_creation_input_token_cost": "cache_write_per_token",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h_per_token",
    "ocr_cost_per_page": "per_page",
    "annotation_cost_per_page": "per_annotated_page",
    "input_cost_per_second": "per_audio_second",
    "input_cost_per_character": "per_character",
    "input_cost_per_query": "per_search_unit",
    "output_cost_per_image": "per_image",
}
# these fall back to the base rate (input, page) when null
_NULLABLE = frozenset(
    {
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "cache_creation_input_token_cost_above_1hr",
        "annotation_cost_per_page",
    }
)
_TEXT_FIELDS = ("source", "date", "mode")
# not a price: the most output tokens one call can produce (what a budget reserves
# for a call that sets no max_tokens)
_MAX_OUTPUT = "max_output_tokens"


class PricingError(ValueError):
    """The catalog or a pricing override is malformed; the message names the model."""


@dataclass(frozen=True, slots=True)
class Price:
    """What one model costs, in USD per unit; None means "same as the base rate"."""

    input_per_token: float = 0.0
    output_per_token: float = 0.0
    cached_input_per_token: float | None = None
    per_page: float = 0.0
    per_annotated_page: float | None = None
    per_audio_second: float = 0.0
    per_character: float = 0.0
    cache_write_per_token: float | None = None
    per_search_unit: float = 0.0
    per_image: float = 0.0
    cache_write_1h_per_token: float | None = None  # None: the cache-write rate
    max_output_tokens: int | None = None
    source: str = ""
    date: str = ""

    @property
    def free(self) -> bool:
        """Every rate is zero: any use costs nothing, whatever the usage says."""
        return not any(
            (
                self.input_per_token,
                self.output_per_token,
                self.cached_input_per_token,
                self.per_page,
                self.per_annotated_page,
                self.per_audio_second,
                self.per_character,
                self.cache_write_per_token,
                self.per_search_unit,
                self.per_image,
                self.cache_write_1h_per_token,
            )
        )

    def cost(self, usage: Usage) -> float:
        """USD for this usage: the sum of every priced quantity it reports."""
        if (
            not usage.cached_tokens
            and not usage.cache_write_tokens
            and usage.pages is None
            and usage.audio_seconds is None
            and usage.characters is None
            and usage.search_units is None
            and usage.images is None
        ):
            # Tokens only, nothing cached: most priced calls. The full sum below would add
            # the same two products and many zeros, at a much higher cost per call.
            return (usage.prompt_tokens or 0) * self.input_per_token + (
                usage.completion_tokens or 0
            ) * self.output_per_token
        # prompt_tokens counts every input token, those read from and written to a cache too
        prompt = usage.prompt_tokens or 0
        cached = min(usage.cached_tokens or 0, prompt)
        written = min(usage.cache_write_tokens or 0, prompt - cached)
        cached_rate = (
            self.input_per_token
            if self.cached_input_per_token is None
            else self.cached_input_per_token
        )
        write_rate = (
            self.input_per_token
            if self.cache_write_per_token is None
            else self.cache_write_per_token
        )
        written_1h = min(usage.cache_write_1h_tokens or 0, written)
        write_1h_rate = (
            write_rate if self.cache_write_1h_per_token is None else self.cache_write_1h_per_token
        )
        pages = usage.pages or 0
        annotated = min(usage.annotated_pages or 0, pages)
        annotated_rate = (
            self.per_page if self.per_annotated_page is None else self.per_annotated_page
        )
        return (
            (prompt - cached - written) * self.input_per_token
            + cached * cached_rate
            + (written - written_1h) * write_rate
            + written_1h * write_1h_rate
            + (usage.completion_tokens or 0) * self.output_per_token
            + (pages - annotated) * self.per_page
            + annotated * annotated_rate
            + (usage.audio_seconds or 0.0) * self.per_audio_second
            + (usage.characters or 0) * self.per_character
            + (usage.search_units or 0) * self.per_search_unit
            + (usage.images or 0) * self.per_image
        )


def _rate(model: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PricingError(f"pricing for {model!r}: {name} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise PricingError(f"pricing for {model!r}: {name} must be a finite number >= 0")
    return number


def _token_count(model: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PricingError(f"pricing for {model!r}: {_MAX_OUTPUT} must be a whole number >= 1")
    return value


def price_from(model: str, fields: Mapping[str, Any], base: Price | None = None) -> Price:
    """A Price from LiteLLM-named fields, on top of ``base`` (or of all-zero rates)."""
    if not isinstance(fields, Mapping):
        raise PricingError(f"pricing for {model!r} must be a mapping of price fields")
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _FIELDS:
            if value is None and name not in _NULLABLE:
                raise PricingError(f"pricing for {model!r}: {name} cannot be null")
            changes[_FIELDS[name]] = None if value is None else _rate(model, name, value)
        elif name == _MAX_OUTPUT:
            changes[name] = _token_count(model, value)
        elif name in ("source", "date"):
            changes[name] = str(value)
        elif name != "mode":
            known = ", ".join(sorted((*_FIELDS, *_TEXT_FIELDS, _MAX_OUTPUT)))
            raise PricingError(f"pricing for {model!r}: unknown field {name!r} (known: {known})")
    return replace(base or Price(), **changes)


class Catalog:
    """Model name -> Price, with aliases such as ``mistral-large-latest``."""

    def __init__(self, prices: Mapping[str, Price], aliases: Mapping[str, str]) -> None:
        for alias, target in aliases.items():
            if target not in prices:
                raise PricingError(f"alias {alias!r} names {target!r}, which has no price")
        self._prices = dict(prices)
        self._aliases = {a: t for a, t in aliases.items() if a not in prices}

    def lookup(self, model: str | None) -> Price | None:
        """The price of a model or alias, or None when the catalog does not know it."""
        if not model:
            return None
        price = self._prices.get(model)
        if price is None:
            target = self._aliases.get(model)
            if target is not None:
                price = self._prices[target]
        return price

    def resolve(self, model: str) -> str | None:
        """The catalog entry a name is priced by (itself, or an alias's target)."""
        if model in self._prices:
            return model
        return self._aliases.get(model)

    def models(self) -> list[str]:
        """Every priced name, aliases included, sorted."""
        return sorted({*self._prices, *self._aliases})

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Catalog:
        """A new catalog where each override replaces or adds the price of one name."""
        prices = dict(self._prices)
        for model, fields in overrides.items():
            if not isinstance(fields, Mapping):
                raise PricingError(f"pricing for {model!r} must be a mapping of price fields")
            # an overridden price no longer comes from the list-price source
            prices[model] = price_from(
                model, {"source": "config", "date": "", **fields}, self.lookup(model)
            )
        return Catalog(prices, self._aliases)


def parse_catalog(document: Any) -> Catalog:
    """Build a catalog from the shipped JSON document's structure."""
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        raise PricingError("price catalog must be an object with a 'models' object")
    aliases = document.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(t, str) for t in aliases.values()):
        raise PricingError("price catalog 'aliases' must map names to model names")
    prices = {name: price_from(name, fields) for name, fields in document["models"].items()}
    return Catalog(prices, aliases)


def _shipped(spec: ProviderSpec) -> Catalog:
    raw = resources.files("passgate.providers").joinpath("prices", spec.prices_file).read_bytes()
    try:
        return parse_catalog(orjson.loads(raw))
    except PricingError as exc:
        raise PricingError(f"{spec.prices_file}: {exc}") from None


def load_catalog(
    overrides: Mapping[str, Mapping[str, Any]] | None = None, spec: ProviderSpec | None = None
) -> Catalog:
    """One provider's shipped list prices (the first built-in provider's unless ``spec`` is
    given) with the overrides that apply to it."""
    spec = spec or BUILTIN[0]
    return load_catalogs(overrides, (spec,)).catalog(spec.name)


class Catalogs:
    """Each provider's catalog: a model is priced by the catalog of the provider it ran on."""

    def __init__(
        self,
        catalogs: Mapping[str, Catalog],
        deployed: Mapping[tuple[str, str], Catalog] | None = None,
    ) -> None:
        """``deployed``: (provider, deployment) -> the catalog of a deployment with prices
        of its own."""
        self._catalogs = dict(catalogs)
        self._deployed = dict(deployed or {})

    def catalog(self, provider: str) -> Catalog:
        """The catalog of ``provider`` (an empty one for a provider without prices)."""
        return self._catalogs.get(provider) or _EMPTY

    def lookup(
        self, provider: str, model: str | None, deployment: str | None = None
    ) -> Price | None:
        """The price of ``model`` on ``provider`` (on ``deployment`` when it has prices of its
        own), or None when the catalog does not know it."""
        catalog = self._catalogs.get(provider)
        if deployment is not None and self._deployed:
            catalog = self._deployed.get((provider, deployment), catalog)
        return None if catalog is None else catalog.lookup(model)


_EMPTY = Catalog({}, {})


def load_catalogs(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    specs: tuple[ProviderSpec, ...] = BUILTIN,
    deployments: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]] | None = None,
) -> Catalogs:
    """Every provider's shipped list prices with the config's ``pricing:`` overrides.

    An override named ``provider/model`` (``anthropic/claude-x``) applies to that provider
    only; any other name applies to each provider whose catalog knows it, and when none
    does, adds a custom model to every provider (a self-hosted model's price).
    ``deployments`` ((provider, deployment) -> model -> price fields) are a deployment's own
    prices, over its provider's.
    """
    shipped = {spec.name: _shipped(spec) for spec in specs}
    targeted: dict[str, dict[str, Mapping[str, Any]]] = {name: {} for name in shipped}
    for key, fields in (overrides or {}).items():
        provider, _, model = key.partition("/")
        if model and provider in shipped:
            targeted[provider][model] = fields
            continue
        known = [name for name, catalog in shipped.items() if catalog.resolve(key) is not None]
        for name in known or shipped:
            targeted[name][key] = fields
    catalogs = {name: catalog.with_overrides(targeted[name]) for name, catalog in shipped.items()}
    deployed: dict[tuple[str, str], Catalog] = {}
    for (provider, deployment), prices in (deployments or {}).items():
        base = catalogs.get(provider)
        if base is None:
            continue
        try:
            deployed[(provider, deployment)] = base.with_overrides(prices)
        except PricingError as exc:
            raise PricingError(f"deployment {deployment!r} of {provider}: {exc}") from None
    return Catalogs(catalogs, deployed)
