"""Hypothesis strategies for whole admin requests, drawn from each route's pydantic model.

A request body (or query string) is a subset of the model's fields (under any of the
names they are read under) with values the fields accept, plus one or two fields with
hostile values (``tests.support.admin_values``), and now and then a field the model
does not know. Raw bodies that are not JSON at all, and raw query strings, are drawn too.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from pydantic import AliasChoices, BaseModel

from tests.support.admin_values import ODD_TEXT, Known, hostile, json_values, valid, weight


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


def _accepted(
    schemas: dict[str, dict[str, Any]], known: Known, leave_out: str = ""
) -> st.SearchStrategy[dict[str, Any]]:
    optional = {
        name: valid(schema, name, known) for name, schema in schemas.items() if name != leave_out
    }
    return st.fixed_dictionaries({}, optional=optional)


UNKNOWN = st.one_of(
    st.just({}),
    st.just({}),
    st.just({}),
    st.dictionaries(st.sampled_from(["extra", "Key", "", "\u0000"]), json_values(3), max_size=1),
)


def fields(model: type[BaseModel], known: Known) -> st.SearchStrategy[dict[str, Any]]:
    """Fields the model accepts, one or two hostile ones, and rarely an unknown one."""
    schemas = _schemas(model)
    # each field under its own name (its aliases are read the same way)
    picks = [
        name for name in sorted(model.model_fields) for _ in range(weight(schemas[name], name))
    ]
    one_hostile = st.sampled_from(picks).flatmap(
        lambda name: st.tuples(st.just(name), hostile(schemas[name], name, known))
    )
    hostiles = st.lists(one_hostile, min_size=1, max_size=2).map(dict)
    return st.builds(lambda a, h, u: {**a, **h, **u}, _accepted(schemas, known), hostiles, UNKNOWN)


def one_hostile_field(
    model: type[BaseModel], field: str, known: Known
) -> st.SearchStrategy[dict[str, Any]]:
    """Fields the model accepts, and ``field`` with a hostile value."""
    schemas = _schemas(model)
    return st.builds(
        lambda accepted, value: {**accepted, field: value},
        _accepted(schemas, known, leave_out=field),
        hostile(schemas[field], field, known),
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
    method: str, path: str, drawn: st.SearchStrategy[dict[str, Any]], raw: bool = True
) -> st.SearchStrategy[Call]:
    """Requests with ``drawn`` fields as their JSON body (or, with ``raw``, not JSON at all)."""
    from_schema = st.builds(
        lambda given, ascii_only: Call(
            method, path, body=_encode(given, ascii_only), names=tuple(given)
        ),
        drawn,
        st.booleans(),
    )
    if not raw:
        return from_schema
    return st.one_of(
        from_schema,
        from_schema,
        from_schema,
        RAW_BODIES.map(lambda body: Call(method, path, body=body)),
    )


RAW_QUERIES = st.sampled_from(
    ["%", "%zz", "a=%ff%fe", "&&==&", "=x", "page=1&page=2", "key", "a" * 9000, "%00=%00"]
)


ANY_PAIRS = st.dictionaries(ODD_TEXT, json_values(3), max_size=3)


def query_calls(
    method: str, path: str, drawn: st.SearchStrategy[dict[str, Any]], raw: bool = True
) -> st.SearchStrategy[Call]:
    """Requests with ``drawn`` fields as their query string (or, with ``raw``, odd ones)."""
    encoded = drawn.map(
        lambda given: Call(
            method,
            path,
            query=urllib.parse.urlencode(
                # a query string has no null: a field left out stands for one
                {name: _query_text(value) for name, value in given.items() if value is not None},
                encoding="utf-8",
                errors="surrogatepass",
            ),
            names=tuple(name for name, value in given.items() if value is not None),
        )
    )
    if not raw:
        return encoded
    return st.one_of(
        encoded, encoded, encoded, RAW_QUERIES.map(lambda query: Call(method, path, query=query))
    )
