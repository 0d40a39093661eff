"""Hypothesis strategies for one admin field, from its JSON schema and its name.

``valid`` draws values the field accepts (so that a request gets past validation and
reaches the code behind it); ``hostile`` draws values at and past its bounds, values
of other types, and the values that break date, number and string handling: huge and
negative durations, far dates with offsets, integers past 64 bits, NaN, infinities,
deep JSON and odd unicode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from passgate.config import DEPLOYMENT_NAME

# Characters that have broken string handling somewhere: NUL and other controls, lone
# surrogates, right-to-left and zero-width marks, a BOM, combining marks, digits of
# other scripts (int() reads them), fullwidth forms, astral-plane emoji, "%" and quotes.
ODD_CHARS = (
    "\x00\x01\x1f\x7f\x80\xa0\xff\u0085\u2028\u2029\u200b\u200e\u202e\ufeff\ufffd\ufffe"
    "\u0301\u0661\u0663\uff11\uff53\U0001f600\U0010ffff\ud800\udfff%'\"\\/ .-:+Tt"
)
ODD_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(ODD_CHARS), st.characters(exclude_categories=())),
    max_size=40,
)
PLAIN_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=24
)
EXTREME_NUMBERS = st.sampled_from(
    [
        -1,
        2**31,
        -(2**31) - 1,
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        2**64,
        10**30,
        10**400,
        -0.0,
        1e308,
        -1e308,
        5e-324,
        float("inf"),
        float("-inf"),
        float("nan"),
    ]
)
NUMBERS = st.one_of(EXTREME_NUMBERS, st.integers(), st.floats(allow_nan=True, allow_infinity=True))
UNITS = ("s", "m", "h", "d", "w", "mo")
VALID_DURATIONS = st.one_of(
    st.sampled_from(["30s", "15m", "1h", "7d", "2w", "1mo", "36500d", "5214w", " 7d "]),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(1, 1000), st.sampled_from(UNITS)),
)
# nine digits of weeks or months is far past what a datetime holds
HUGE_DURATIONS = st.builds(
    lambda n, unit: f"{n}{unit}",
    st.integers(100_000_000, 999_999_999),
    st.sampled_from(["w", "mo", "d"]),
)
HOSTILE_DURATIONS = st.one_of(
    HUGE_DURATIONS,
    HUGE_DURATIONS,
    HUGE_DURATIONS,
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(0, 999_999_999),
        st.sampled_from(UNITS),
    ),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(-(10**20), 10**20),
        st.sampled_from([*UNITS, "y", "", "ms", "W"]),
    ),
    st.sampled_from(["0s", "-1d", "\u0661d", "1e9s", "1d1h", "d", "", "36501d", "5215w"]),
)
OFFSETS = st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
VALID_TIMES = st.one_of(
    st.dates(date(1970, 1, 2), date(9998, 12, 30)).map(date.isoformat),
    st.datetimes(datetime(1970, 1, 2), datetime(9998, 12, 30)).map(datetime.isoformat),
    st.sampled_from(["2025-01-31", "2025-01-31T12:00:00Z", "2025-01-31 12:00:00+05:30"]),
)
HOSTILE_TIMES = st.one_of(
    st.sampled_from(
        [
            "9999-12-31",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2025-01-31T24:00:00",
            "2025-02-30",
            "20250131",
            "2025-W05-1",
            "2025-01-31T12:00:00.123456789+05:30",
            "\u0662\u0660\u0662\u0665-01-01",
            "now",
            "-1",
        ]
    ),
    # the first and last days a datetime holds, with any offset: converting them to UTC,
    # or adding the rest of the day, steps outside
    st.builds(
        lambda day, moment, zone: (
            day.isoformat() if zone is None else datetime.combine(day, moment, zone).isoformat()
        ),
        st.one_of(st.dates(max_value=date(1, 1, 3)), st.dates(min_value=date(9999, 12, 29))),
        st.times(),
        st.one_of(st.none(), OFFSETS),
    ),
    st.dates(min_value=date(9000, 1, 1)).map(date.isoformat),
    st.builds(
        lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
        st.datetimes(),
        OFFSETS,
    ),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, with extreme numbers and odd strings at the leaves."""
    leaves = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


PLAIN_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), PLAIN_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(PLAIN_TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)


def deep_json(depth: int) -> Any:
    """Lists and objects nested ``depth`` deep."""
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

    def ids(self, name: str) -> list[str]:
        """The ids of existing rows that a field called ``name`` may refer to."""
        table = {
            "key": [self.key],
            "keys": [self.key],
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


def weight(schema: dict[str, Any], name: str) -> int:
    """How often to pick this field for a hostile value: more for the kinds that overflow."""
    kinds = {branch.get("type") for branch in schema.get("anyOf", [schema])}
    if _is_duration(name) or _is_time(name):
        return 4
    return 2 if kinds & {"integer", "number", "object", "array"} else 1


def _is_duration(name: str) -> bool:
    return name in ("duration", "budget_duration", "grace_period")


def _is_time(name: str) -> bool:
    return name.endswith(("_time", "_date"))


def _is_key(name: str) -> bool:
    return name in ("key", "keys", "new_key", "api_key")


DEPLOYMENT_NAMES = st.from_regex(DEPLOYMENT_NAME, fullmatch=True)
# Near misses: a leading dot or dash, separators, one character too many, a trailing newline
# (which "$" in a regular expression lets through), look-alike letters of other scripts.
HOSTILE_DEPLOYMENT_NAMES = st.sampled_from(
    ["-eu", ".eu", "_eu", "eu west", "eu/west", "eu:west", "x" * 65, "eu\n", "\u0435u", "eu\x00"]
)


def _is_deployment(name: str) -> bool:
    # not every field about deployments: a filter by deployment takes any name
    return name == "allowed_deployments"


SECRETS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=40
).map(lambda tail: "sk-" + tail)


def valid(schema: dict[str, Any], name: str, known: Known) -> st.SearchStrategy[Any]:
    """Values the field ``name`` (with this JSON schema) should accept."""
    if "anyOf" in schema:
        return st.one_of([valid(branch, name, known) for branch in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31 - 1))
    if kind == "number":
        return st.floats(schema.get("minimum", -1e9), 1e9, allow_nan=False)
    if kind == "array":
        items = valid(schema.get("items", {}), name, known)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=3)
    if kind == "object":
        return st.dictionaries(PLAIN_TEXT, PLAIN_JSON, max_size=3)
    options: list[st.SearchStrategy[Any]] = []
    if _is_duration(name):
        return VALID_DURATIONS
    if _is_time(name):
        return VALID_TIMES
    if _is_key(name):
        options.append(SECRETS)
    elif "route" in name:
        options.append(PLAIN_TEXT.map(lambda tail: "/mistral/v1/" + tail))
    elif _is_deployment(name):
        options.append(DEPLOYMENT_NAMES)
    else:
        options.append(PLAIN_TEXT)
    if known.ids(name):
        options.append(st.sampled_from(known.ids(name)))
    return st.one_of(options)


# The first values drawn are the simplest of the first branch: the likeliest to break.
def _past_bounds(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**31 - 1))
        return st.sampled_from([high + 1, low - 1, 10**30, low, high, str(low), True])
    if kind == "string":
        longest = schema.get("maxLength", 256)
        return st.sampled_from(
            ["x\x00", "x" * (longest + 1), "", "x" * longest, "\u00e9" * longest, "\ud800"]
        )
    if kind == "array":
        longest = schema.get("maxItems", 1000)
        return st.sampled_from([["x\x00"], ["x"] * (longest + 1), [], [None], [[]]])
    if kind == "object":
        return st.sampled_from(
            [
                {"n": 10**30},
                {"n": float("nan")},
                {"n": float("-inf")},
                {"n\x00": "\x00"},
                deep_json(120),
                deep_json(300),
                {"big": "x" * 70_000},
            ]
        )
    return st.nothing()


def hostile(schema: dict[str, Any], name: str, known: Known) -> st.SearchStrategy[Any]:
    """Values at and past the field's bounds, of other types, and that break parsing."""
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    options = [_past_bounds(branch) for branch in branches]
    if _is_duration(name):
        return st.one_of([HOSTILE_DURATIONS] * 4 + [*options, ODD_TEXT, NUMBERS])
    if _is_time(name):
        return st.one_of([HOSTILE_TIMES] * 4 + [*options, ODD_TEXT, NUMBERS])
    if _is_key(name):
        options.append(st.sampled_from(["sk-", "sk- x", "sk-\u00e9", "f" * 64, "F" * 64]))
    if _is_deployment(name) and any(branch.get("type") == "string" for branch in branches):
        options.insert(0, HOSTILE_DEPLOYMENT_NAMES)
    if any(branch.get("type") == "object" for branch in branches):
        options.append(st.dictionaries(ODD_TEXT, json_values(), max_size=4))
    if any(branch.get("type") == "array" for branch in branches):
        item = branches[0].get("items", {})
        options.append(st.lists(hostile(item, name, known), min_size=1, max_size=3))
    options += [ODD_TEXT, NUMBERS, json_values(6)]
    return st.one_of(options)
