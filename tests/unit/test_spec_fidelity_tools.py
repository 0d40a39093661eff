"""Spec-fidelity tools: calls built from a spec, the spec as Prism gets it, answers compared."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.fidelity import Answer, differences, sse_events
from tests.support.openapi_calls import BOUNDARY, FILE_BYTES, SSE, SpecError, spec_calls
from tests.support.prism import merge_alias_paths, resolve_local_defs

_OK = {"200": {"description": "ok", "content": {"application/json": {"schema": {}}}}}


def _spec(paths: dict[str, Any], schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": paths,
        "components": {
            "schemas": schemas or {},
            "securitySchemes": {
                "Bearer": {"type": "http", "scheme": "bearer"},
                "Header": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"Bearer": []}],
    }


def _json_op(schema: dict[str, Any], responses: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "requestBody": {"content": {"application/json": {"schema": schema}}},
        "responses": responses or _OK,
    }


def test_a_body_holds_the_required_fields_only_each_from_its_schema() -> None:
    schemas = {
        "Kind": {"type": "string", "enum": ["first", "second"]},
        "Base": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}},
    }
    body = {
        "allOf": [
            {"$ref": "#/components/schemas/Base"},
            {
                "type": "object",
                "properties": {
                    "kind": {"$ref": "#/components/schemas/Kind"},
                    "tag": {"const": "fixed"},
                    "lang": {"type": "string", "pattern": r"^\w{2}$"},
                    "name": {"type": "string", "minLength": 5},
                    "count": {"type": "integer", "exclusiveMinimum": 3},
                    "limit": {"type": "number", "minimum": 0, "maximum": 0.5},
                    "size": {"anyOf": [{"type": "null"}, {"type": "integer", "default": 7}]},
                    "items": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
                    "optional": {"type": "string"},
                },
                "required": ["kind", "tag", "lang", "name", "count", "limit", "size", "items"],
            },
        ],
        "required": ["id"],
    }
    (call,) = spec_calls(_spec({"/v1/x": {"post": _json_op(body)}}, schemas))
    assert orjson.loads(call.body or b"") == {
        "id": "3f2b8c1e-4d5a-4e6f-8a7b-9c0d1e2f3a4b",
        "kind": "first",
        "tag": "fixed",
        "lang": "en",
        "name": "abcaa",
        "count": 4,
        "limit": 0,
        "size": 7,
        "items": [False, False],
    }
    assert call.headers == (("Accept", "application/json"), ("Content-Type", "application/json"))


def test_parameters_fill_the_path_and_the_required_query() -> None:
    parameters = [
        {"in": "path", "name": "item_id", "required": True, "schema": {"type": "string"}},
        {"in": "query", "name": "page", "required": True, "schema": {"type": "integer"}},
        {"in": "query", "name": "ids", "required": True, "example": ["a b", "c"]},
        {"in": "query", "name": "skip", "schema": {"type": "integer"}},
    ]
    spec = _spec({"/v2/items/{item_id}": {"get": {"parameters": parameters, "responses": _OK}}})
    (call,) = spec_calls(spec)
    assert (call.method, call.target, call.body) == (
        "GET",
        "/v2/items/abc?page=1&ids=a+b&ids=c",
        None,
    )


def test_a_multipart_body_carries_its_fields_and_every_file() -> None:
    schema = {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "file": {"anyOf": [{"type": "string", "format": "binary"}, {"type": "null"}]},
        },
        "required": ["model"],
    }
    op = {
        "requestBody": {"content": {"multipart/form-data": {"schema": schema}}},
        "responses": _OK,
    }
    (call,) = spec_calls(_spec({"/v1/upload": {"post": op}}))
    assert ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}") in call.headers
    assert call.body is not None
    assert call.body.startswith(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nabc\r\n'.encode()
    )
    assert b'name="file"; filename="upload.bin"' in call.body
    assert FILE_BYTES in call.body
    assert call.body.endswith(f"--{BOUNDARY}--\r\n".encode())


def test_an_answer_that_may_stream_gives_a_second_streamed_call() -> None:
    responses = {
        "200": {"description": "ok", "content": {"application/json": {}, SSE: {}}},
    }
    schema = {"type": "object", "properties": {"stream": {"type": "boolean"}}}
    paths = {
        "/v1/chat": {"post": _json_op(schema, responses)},
        "/v1/events": {"get": {"responses": {"200": {"content": {SSE: {}}}}}},
        "/v1/me": {"get": {"security": [{"Header": []}], "responses": _OK}},
    }
    plain, streamed, events, me = spec_calls(_spec(paths))
    assert (plain.key, plain.body, plain.streamed) == ("POST /v1/chat", b"{}", False)
    assert (streamed.key, streamed.body) == ("POST /v1/chat (stream)", b'{"stream":true}')
    assert ("Accept", SSE) in streamed.headers and streamed.streamed
    assert (events.key, events.streamed, events.headers) == (
        "GET /v1/events",
        True,
        (("Accept", SSE),),
    )
    assert plain.credential("k") == ("Authorization", "Bearer k")
    assert me.credential("k") == ("x-api-key", "k")


def test_an_alias_path_is_called_at_its_http_path() -> None:
    (call,) = spec_calls(_spec({"/v1/conversations#stream": {"post": _json_op({})}}))
    assert (call.key, call.target, call.streamed) == (
        "POST /v1/conversations#stream",
        "/v1/conversations",
        True,
    )


def test_a_pattern_no_candidate_matches_fails_loudly() -> None:
    schema = {
        "type": "object",
        "properties": {"v": {"type": "string", "pattern": "^Z{9}$"}},
        "required": ["v"],
    }
    with pytest.raises(SpecError, match="Z"):
        list(spec_calls(_spec({"/v1/x": {"post": _json_op(schema)}})))


def test_local_defs_references_point_at_the_enclosing_schema() -> None:
    inner = {
        "type": "object",
        "properties": {
            "event": {"$ref": "#/$defs/Kind"},
            "data": {
                "oneOf": [{"$ref": "#/$defs/Kind"}],
                "discriminator": {"propertyName": "t", "mapping": {"k": "#/$defs/Kind"}},
            },
            "other": {"$ref": "#/components/schemas/Elsewhere"},
        },
        "$defs": {"Kind": {"type": "string"}},
    }
    spec = _spec({"/v1/a/b": {"post": _json_op(inner)}})
    assert resolve_local_defs(spec) == 3
    pointer = "#/paths/~1v1~1a~1b/post/requestBody/content/application~1json/schema/$defs/Kind"
    properties = spec["paths"]["/v1/a/b"]["post"]["requestBody"]["content"]["application/json"]
    properties = properties["schema"]["properties"]
    assert properties["event"] == {"$ref": pointer}
    assert properties["data"]["oneOf"] == [{"$ref": pointer}]
    assert properties["data"]["discriminator"]["mapping"] == {"k": pointer}
    assert properties["other"] == {"$ref": "#/components/schemas/Elsewhere"}
    assert resolve_local_defs(spec) == 0


def test_alias_operations_move_to_their_http_path_unless_it_has_the_method() -> None:
    stream_alias: dict[str, Any] = {"responses": {}}
    id_alias: dict[str, Any] = {"responses": {}}
    paths = {
        "/v1/c": {"post": {"responses": {}}},
        "/v1/c#stream": {"post": stream_alias},
        "/v1/c/{id}#id": {"patch": id_alias, "delete": {"responses": {}}},
    }
    spec = _spec(paths)
    assert merge_alias_paths(spec) == ["PATCH /v1/c/{id}#id", "DELETE /v1/c/{id}#id"]
    assert spec["paths"]["/v1/c/{id}"]["patch"] is id_alias
    assert "/v1/c/{id}#id" not in spec["paths"]
    assert spec["paths"]["/v1/c#stream"] == {"post": stream_alias}


def _answer(body: bytes = b"{}", *extra: tuple[str, str], status: int = 200) -> Answer:
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return Answer(status, [*headers, *extra], body)


def test_a_faithful_relay_differs_in_nothing_but_its_documented_headers() -> None:
    direct = _answer(b"{}", ("date", "Mon"), ("connection", "keep-alive"), ("x-a", "1"))
    relayed = _answer(b"{}", ("date", "Tue"), ("x-a", "1"), ("x-request-id", "r"))
    relayed.headers.append(("x-passgate-cost", "0"))
    assert differences(direct, relayed) == []


def test_every_kind_of_difference_is_reported() -> None:
    direct = _answer(b'{"a":1}', ("x-a", "1"), ("x-a", "2"))
    relayed = _answer(b'{"a":2}', ("x-a", "1"), ("x-b", "1"), status=201)
    found = differences(direct, relayed)
    assert found[0] == "status 201 != 200"
    assert found[1].startswith("body ")
    assert found[2] == "headers lost or changed: [('x-a', '2')]"
    assert found[3] == "headers added: ['x-b']"


def test_sse_is_compared_event_by_event() -> None:
    sse = [("content-type", SSE)]
    direct = Answer(200, sse, b"data: 1\n\ndata: 2\n\n")
    assert sse_events(direct.body) == [b"data: 1\n\n", b"data: 2\n\n"]
    assert sse_events(b"data: 1\r\n\r\ndata: 2") == [b"data: 1\r\n\r\n", b"data: 2"]
    assert differences(direct, Answer(200, sse, direct.body)) == []
    assert differences(direct, Answer(200, sse, b"data: 1\r\n\r\ndata: 2\r\n\r\n")) == [
        "SSE: event 0 differs (2 events, 2 sent)"
    ]
    assert differences(direct, Answer(200, sse, b"data: 1\n\ndata: 3\n\n")) == [
        "SSE: event 1 differs (2 events, 2 sent)"
    ]
    assert differences(direct, Answer(200, sse, b"data: 1\n\n")) == [
        "SSE: the number of events differs (1 events, 2 sent)"
    ]
