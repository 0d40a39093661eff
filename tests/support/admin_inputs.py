"""Hypothesis strategies for admin requests, drawn from each route's pydantic schema.

Every property of a route's request model gets values of its own type near and past
its bounds, values a name suggests (durations, keys, times, ids of rows that exist),
and hostile values of any type: extreme numbers, huge and negative durations, far
dates, deep JSON and odd unicode. Raw bodies that are not JSON at all are drawn too.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from pydantic import AliasChoices, BaseModel

# Characters that have broken string handling somewhere: NUL and other controls, a lone
# surrogate, right-to-left and zero-width marks, a BOM, combining marks, digits of
# other scripts (int() reads them), fullwidth forms, astral-plane emoji, "%" and quotes.
ODD_CHARS = (
    "\x00\x01\x1f\x7f\x80\xa0\xff\u0085\u2028\u2029\u200b\u200e\u202e\ufeff\ufffd\ufffe"
    "\u0301\u0661\u0663\uff11\uff53\U0001f600\U0010ffff\ud800\udfff%'\"\\/ .-:+Tt"
)
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(ODD_CHARS), st.characters(exclude_categories=()), st.sampled_from("a1-")
    ),
    max_size=40,
)
HUGE_NUMBERS = (
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    -(10**30),
    10**400,
    0.5,
    -0.0,
    1e308,
    -1e308,
    5e-324,
    float("inf"),
    float("-inf"),
    float("nan"),
)
NUMBERS = st.one_of(
    st.sampled_from(HUGE_NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)
DURATIONS = st.one_of(
    st.sampled_from(
        [
            "999999999w",
            "999999999mo",
            "999999999d",
            "999999999s",
            "5218w",
            "1200mo",
            "36500d",
            "36501d",
            "0s",
            "-1d",
            "1s",
            "30d",
            "1mo",
            " 7d ",
            "\u0661d",
            "1e9s",
            "99999999999999999999w",
            "1d1h",
            "d",
            "",
        ]
    ),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(min_value=-(10**12), max_value=10**12),
        st.sampled_from(["s", "m", "h", "d", "w", "mo", "y", ""]),
    ),
)
TIMES = st.one_of(
    st.sampled_from(
        [
            "9999-12-31",
            "9999-12-31T23:59:59",
            "9999-12-31T23:59:59-23:59",
            "9998-12-31",
            "0001-01-01",
            "0001-01-01T00:00:00+23:59",
            "1969-12-31T23:59:59Z",
            "1970-01-01",
            "2025-01-31",
            "2025-01-31T12:00:00Z",
            "2025-01-31T24:00:00",
            "2025-02-30",
            "20250131",
            "2025-W05-1",
            "2025-01-31T12:00:00.123456789+05:30",
            "\u0662\u0660\u0662\u0665-01-01",
            "now",
            "-1",
            "",
        ]
    ),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.dates().map(lambda day: day.isoformat()),
)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Any JSON value, with extreme numbers and odd strings at the leaves."""
    leaves = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def deep_json(depth: int) -> Any:
    """A list nested ``depth`` deep around a dict nested as deep."""
    value: Any = {"leaf": 1}
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


@dataclass(frozen=True)
class Known:
    """Rows that exist when the run starts, so that some requests reach an update."""

    key: str
    key_alias: str
    user_id: str
    team_id: str
    customer_id: str
    extra: dict[str, list[str]] = field(default_factory=dict)

    def ids(self, name: str) -> list[str]:
        """The ids of existing rows that a field called ``name`` may refer to."""
        table = {
            "key": [self.key],
            "keys": [self.key],
            "new_key": [self.key],
            "api_key": [self.key],
            "key_alias": [self.key_alias],
            "key_aliases": [self.key_alias],
            "user_id": [self.user_id, self.customer_id],
            "team_id": [self.team_id],
            "end_user_id": [self.customer_id],
            "end_user": [self.customer_id],
            "customer_id": [self.customer_id],
        }
        return table.get(name, [])


def _hinted(name: str, known: Known) -> st.SearchStrategy[Any] | None:
    """Values a field's name suggests it should hold, right and wrong."""
    options: list[st.SearchStrategy[Any]] = []
    if name in ("duration", "budget_duration", "grace_period"):
        options.append(DURATIONS)
    if name.endswith(("_time", "_date")):
        options.append(TIMES)
    if "key" in name and "alias" not in name:
        options.append(
            st.sampled_from(
                ["sk-" + "a" * 40, "sk-", "sk- x", "sk-" + "b" * 300, "f" * 64, "F" * 64, "0" * 63]
            )
        )
    if "route" in name:
        options.append(st.sampled_from(["/mistral/v1/ocr", "/", "v1/ocr", "/" + "x" * 2000]))
    if known.ids(name):
        options.append(st.sampled_from(known.ids(name)))
    return st.one_of(options) if options else None


def _schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each name a model reads (field names and their aliases) with its field's JSON schema."""
    properties = model.model_json_schema()["properties"]
    by_name: dict[str, dict[str, Any]] = {}
    for name, info in model.model_fields.items():
        schema = properties.get(name, {})
        by_name[name] = schema
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    by_name[choice] = schema
        elif isinstance(alias, str):
            by_name[alias] = schema
    return by_name


def _from_schema(schema: dict[str, Any], name: str, known: Known) -> st.SearchStrategy[Any]:
    """Values for one property of a JSON schema: its own type, near and past its bounds."""
    if "anyOf" in schema:
        return st.one_of([_from_schema(branch, name, known) for branch in schema["anyOf"]])
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), TEXT)
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**40)))
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**40))
        near = st.sampled_from([low - 1, low, high, high + 1])
        inside = st.integers(int(low), int(high)) if kind == "integer" else st.floats(low, high)
        return st.one_of(near, inside, NUMBERS)
    if kind == "string":
        longest = schema.get("maxLength", 300)
        options = [
            TEXT,
            st.sampled_from(["", "x" * longest, "x" * (longest + 1), "é" * longest]),
        ]
        hinted = _hinted(name, known)
        if hinted is not None:
            options.insert(0, hinted)
        return st.one_of(options)
    if kind == "array":
        items = _from_schema(schema.get("items", {}), name, known)
        longest = schema.get("maxLength", schema.get("maxItems", 5))
        return st.one_of(
            st.lists(items, max_size=4),
            st.lists(items, min_size=1, max_size=1).map(lambda one: one * (longest + 1)),
        )
    if kind == "object":
        return st.one_of(
            st.dictionaries(TEXT, json_values(), max_size=6),
            st.sampled_from([deep_json(120), deep_json(300), {"big": "x" * 70_000}]),
        )
    return json_values()


def _value(schema: dict[str, Any], name: str, known: Known) -> st.SearchStrategy[Any]:
    """A field's value: mostly of its schema's type, sometimes anything at all."""
    return st.one_of(
        _from_schema(schema, name, known), _from_schema(schema, name, known), json_values(6)
    )


def fields(model: type[BaseModel], known: Known) -> st.SearchStrategy[dict[str, Any]]:
    """A subset of a model's fields (under any of their names), maybe with an unknown one."""
    by_name = _schemas(model)
    optional = {name: _value(schema, name, known) for name, schema in by_name.items()}
    unknown = st.dictionaries(
        st.sampled_from(["extra", "Key", "", "\u0000"]), json_values(3), max_size=1
    )
    return st.builds(
        lambda given, extra: {**given, **extra},
        st.fixed_dictionaries({}, optional=optional),
        unknown,
    )


@dataclass(frozen=True)
class Call:
    """One generated admin request."""

    method: str
    path: str
    query: str = ""
    body: bytes | None = None
    names: tuple[str, ...] = ()  # the field names the request sent


RAW_BODIES = st.one_of(
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"x"',
            b"1e999",
            b"{",
            b"\xff\xfe{}",
            b'{"a": 1e999}',
            b'{"metadata": {"n": NaN}}',
            b'{"metadata": {"n": -Infinity}}',
            b'{"metadata": {"n": 123456789012345678901234567890}}',
            b'{"max_budget": 1' + b"0" * 400 + b"}",
            b'{"duration": "999999999w"}',
            b'{"budget_duration": "999999999w"}',
            b'{"key_alias": "\\ud800"}',
            b'{"key_alias": "a", "key_alias": "b"}',
            b"[" * 10_000 + b"]" * 10_000,
            b'{"metadata": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
            b"{" + b" " * (1024 * 1024) + b"}",
        ]
    ),
    st.binary(max_size=64),
)


def _encode(body: dict[str, Any], ascii_only: bool) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


def _query_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, allow_nan=True)


def body_calls(
    method: str, path: str, model: type[BaseModel], known: Known
) -> st.SearchStrategy[Call]:
    """Requests whose JSON body is drawn from ``model``'s schema, or is not JSON at all."""
    from_schema = st.builds(
        lambda given, ascii_only: Call(
            method, path, body=_encode(given, ascii_only), names=tuple(given)
        ),
        fields(model, known),
        st.booleans(),
    )
    raw = RAW_BODIES.map(lambda body: Call(method, path, body=body))
    return st.one_of(from_schema, from_schema, from_schema, raw)


RAW_QUERIES = st.sampled_from(
    ["%", "%zz", "a=%ff%fe", "&&==&", "=x", "page=1&page=2", "key", "a" * 9000, "%00=%00"]
)


def query_calls(
    method: str, path: str, model: type[BaseModel] | None, known: Known
) -> st.SearchStrategy[Call]:
    """Requests whose query string is drawn from ``model``'s schema (any names without one)."""
    pairs: st.SearchStrategy[dict[str, Any]]
    if model is None:
        pairs = st.dictionaries(TEXT, json_values(3), max_size=3)
    else:
        pairs = fields(model, known)
    encoded = pairs.map(
        lambda given: Call(
            method,
            path,
            query=urllib.parse.urlencode(
                {name: _query_text(value) for name, value in given.items()},
                encoding="utf-8",
                errors="surrogatepass",
            ),
            names=tuple(given),
        )
    )
    raw = RAW_QUERIES.map(lambda query: Call(method, path, query=query))
    return st.one_of(encoded, encoded, encoded, raw)
