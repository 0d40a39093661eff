"""One valid HTTP call per operation of an OpenAPI 3.1 spec, built from the spec alone.

    for call in spec_calls(spec):     # paths x methods, in the spec's order
        call.key                      # "POST /v1/conversations#stream" (the spec's path)
        call.method, call.target      # "POST", "/v1/conversations" (alias cut, parameters filled)
        call.headers, call.body       # Content-Type and Accept, the body's exact bytes

Path parameters and required query parameters are filled, and a request body is the
operation's example when it has one, else the smallest value its schema allows: the
required properties only, each from its ``const``, ``enum``, ``default``, ``examples``, or
its type and format. A multipart body also carries every binary (file) field, so uploads
are exercised. An operation whose success answer may be JSON or SSE gives two calls, the
second with ``"stream": true`` (when its body has that field) and ``Accept:
text/event-stream``. Everything is deterministic: the same spec gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

import orjson

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SSE = "text/event-stream"
BOUNDARY = "spec-fidelity-boundary-7f3a"
# The bytes of an uploaded file: not UTF-8, with a NUL and CRLFs, so any re-encoding shows.
FILE_BYTES = b"RIFF\x00\x01\xff\xfe spec-fidelity upload \r\n--not-a-boundary\r\n\x80\x81"
_FORMATS = {
    "date-time": "2026-01-02T03:04:05Z",
    "date": "2026-01-02",
    "time": "03:04:05Z",
    "uuid": "3f2b8c1e-4d5a-4e6f-8a7b-9c0d1e2f3a4b",
    "uri": "https://example.com/a.png",
    "url": "https://example.com/a.png",
    "iri": "https://example.com/a.png",
    "uri-reference": "https://example.com/a.png",
    "email": "user@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "byte": "AAEC",
    "duration": "PT1S",
    "password": "secret",
}
# Strings tried, in order, against a ``pattern`` (the first that matches is used); a new
# pattern no candidate matches makes the builder fail loudly, to be added here.
_PATTERN_CANDIDATES = (
    "abc",
    "en",
    "a1",
    "a-b",
    "a_b",
    "abc123",
    "1",
    "2026-01-02",
    "#aabbcc",
    "a.b",
)
_MAX_DEPTH = 40


class SpecError(ValueError):
    """The spec holds something the builder cannot make a valid value for."""


@dataclass(frozen=True)
class SpecCall:
    """One request for one operation (or its streamed variant)."""

    key: str
    operation_id: str
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    streamed: bool
    key_header: str = "Authorization"  # where the spec's security scheme wants the API key
    key_prefix: str = "Bearer "

    @property
    def target(self) -> str:
        """The request target: path and query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def credential(self, key: str) -> tuple[str, str]:
        """The header that carries ``key`` as this operation's security scheme says."""
        return self.key_header, self.key_prefix + key


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


class _Values:
    """Minimal valid values for the schemas of one spec."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec

    def resolve(self, schema: Any) -> dict[str, Any]:
        """``schema`` with its ``$ref`` chain followed (sibling keywords kept, as 3.1 says)."""
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise SpecError(f"external reference {ref!r}")
            target: Any = self._spec
            for token in ref[2:].split("/"):
                target = target[_unescape(token)]
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings}
            seen += 1
            if seen > _MAX_DEPTH:
                raise SpecError(f"reference loop at {ref!r}")
        if not isinstance(schema, dict):
            raise SpecError(f"not a schema: {schema!r}")
        return schema

    def choice(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The first non-null branch of an ``anyOf``/``oneOf``, else the schema itself."""
        for keyword in ("oneOf", "anyOf"):
            if keyword in schema:
                for branch in schema[keyword]:
                    resolved = self.resolve(branch)
                    if resolved.get("type") != "null":
                        rest = {k: v for k, v in schema.items() if k != keyword}
                        return self.choice({**rest, **resolved})
        return schema

    def merged(self, schema: dict[str, Any]) -> dict[str, Any]:
        """An ``allOf`` folded into one schema: properties and required lists joined."""
        if "allOf" not in schema:
            return schema
        out = {k: v for k, v in schema.items() if k != "allOf"}
        properties = dict(out.get("properties", {}))
        required = list(out.get("required", []))
        for part in schema["allOf"]:
            resolved = self.merged(self.choice(self.resolve(part)))
            properties.update(resolved.get("properties", {}))
            required += [name for name in resolved.get("required", []) if name not in required]
            out = {**resolved, **out}
        if properties:
            out["properties"] = properties
        if required:
            out["required"] = required
        return out

    def flat(self, schema: Any) -> dict[str, Any]:
        """The schema one value is built from: reference, branch and ``allOf`` resolved."""
        return self.merged(self.choice(self.resolve(schema)))

    def value(self, schema: Any, depth: int = 0) -> Any:
        """The smallest value ``schema`` accepts (see the module's docstring)."""
        if depth > _MAX_DEPTH:
            raise SpecError("schema nests too deep")
        flat = self.flat(schema)
        if "const" in flat:
            return flat["const"]
        enum = [v for v in flat.get("enum", []) if v is not None]
        if enum:
            return enum[0]
        if flat.get("default") is not None:
            return flat["default"]
        kind = _type_of(flat)
        if kind in ("string", "integer", "number", "boolean"):
            examples = flat.get("examples")
            if isinstance(examples, list) and examples and examples[0] is not None:
                return examples[0]
            if flat.get("example") is not None:
                return flat["example"]
        if kind == "object":
            properties = flat.get("properties", {})
            return {
                name: self.value(properties.get(name, {}), depth + 1)
                for name in flat.get("required", [])
            }
        if kind == "array":
            items = flat.get("items", {})
            return [self.value(items, depth + 1) for _ in range(int(flat.get("minItems", 0)))]
        if kind == "string":
            return _string(flat)
        if kind in ("integer", "number"):
            return _number(flat, kind)
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return {}

    def is_binary(self, schema: Any) -> bool:
        """Whether ``schema`` (or its non-null branch) is a file: a binary string."""
        flat = self.flat(schema)
        return _type_of(flat) == "string" and flat.get("format") == "binary"


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        return "object"
    if kind is None and "items" in schema:
        return "array"
    return kind if isinstance(kind, str) else None


def _string(schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        text = _FORMATS[fmt]
    elif "pattern" in schema:
        pattern = re.compile(schema["pattern"])
        found = next((c for c in _PATTERN_CANDIDATES if pattern.search(c)), None)
        if found is None:
            raise SpecError(f"no candidate string matches the pattern {schema['pattern']!r}")
        text = found
    else:
        text = "abc"
    least = int(schema.get("minLength", 0))
    if len(text) < least:
        text += "a" * (least - len(text))
    most = schema.get("maxLength")
    return text[: int(most)] if most is not None else text


def _number(schema: dict[str, Any], kind: str) -> int | float:
    value: int | float = 1
    if "minimum" in schema:
        value = schema["minimum"]
    elif isinstance(schema.get("exclusiveMinimum"), int | float):
        value = schema["exclusiveMinimum"] + 1
    if "maximum" in schema:
        value = min(value, schema["maximum"])
    return int(value) if kind == "integer" else value


def _form_field(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def multipart_body(fields: dict[str, Any], files: list[str]) -> bytes:
    """``multipart/form-data`` with ``BOUNDARY``: text fields, then each file as FILE_BYTES."""
    parts: list[bytes] = []
    for name, value in fields.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            parts.append(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + _form_field(item).encode()
                + b"\r\n"
            )
    for name in files:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="upload.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + FILE_BYTES
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _key_placement(spec: dict[str, Any], operation: dict[str, Any]) -> tuple[str, str]:
    """Header and prefix of the operation's first security scheme (a bearer one by default)."""
    requirements = operation.get("security", spec.get("security", []))
    schemes = spec.get("components", {}).get("securitySchemes", {})
    for requirement in requirements:
        for name in requirement:
            scheme = schemes.get(name, {})
            if scheme.get("type") == "apiKey" and scheme.get("in") == "header":
                return str(scheme["name"]), ""
            if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer":
                return "Authorization", "Bearer "
    return "Authorization", "Bearer "


def _success_types(operation: dict[str, Any]) -> list[str]:
    for status, response in operation.get("responses", {}).items():
        if str(status).startswith("2"):
            return list(response.get("content", {}))
    return []


def _parameters(
    values: _Values, path_item: dict[str, Any], operation: dict[str, Any]
) -> list[dict[str, Any]]:
    declared = [values.resolve(p) for p in path_item.get("parameters", [])]
    own = [values.resolve(p) for p in operation.get("parameters", [])]
    names = {(p["in"], p["name"]) for p in own}
    return [p for p in declared if (p["in"], p["name"]) not in names] + own


def _param_value(values: _Values, parameter: dict[str, Any]) -> Any:
    if "example" in parameter and parameter["example"] is not None:
        return parameter["example"]
    return values.value(parameter.get("schema", {}))


def _body(
    values: _Values, operation: dict[str, Any], stream: bool
) -> tuple[str | None, bytes | None]:
    request_body = operation.get("requestBody")
    if not request_body:
        return None, None
    content = values.resolve(request_body).get("content", {})
    if not content:
        return None, None
    media_type, media = next(iter(content.items()))
    schema = media.get("schema", {})
    if "example" in media:
        data = media["example"]
    elif "examples" in media:
        data = values.resolve(next(iter(media["examples"].values())))["value"]
    else:
        data = values.value(schema)
    properties = values.flat(schema).get("properties", {})
    if stream and isinstance(data, dict) and "stream" in properties:
        data = {**data, "stream": True}
    if media_type == "multipart/form-data":
        files = [n for n, s in properties.items() if values.is_binary(s)]
        fields = {n: v for n, v in data.items() if n not in files}
        return f"multipart/form-data; boundary={BOUNDARY}", multipart_body(fields, files)
    if "json" in media_type:
        return media_type, orjson.dumps(data)
    raise SpecError(f"no body builder for {media_type}")


def spec_calls(spec: dict[str, Any]) -> Iterator[SpecCall]:
    """One call per operation of ``spec``, two for an operation answering JSON or SSE."""
    values = _Values(spec)
    for spec_path, path_item in spec.get("paths", {}).items():
        for method in METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            key_header, key_prefix = _key_placement(spec, operation)
            for call in _calls_for(values, spec_path, path_item, method, operation):
                yield replace(call, key_header=key_header, key_prefix=key_prefix)


def _calls_for(
    values: _Values,
    spec_path: str,
    path_item: dict[str, Any],
    method: str,
    operation: dict[str, Any],
) -> Iterator[SpecCall]:
    key = f"{method.upper()} {spec_path}"
    path = spec_path.split("#", 1)[0]
    query: list[tuple[str, str]] = []
    for parameter in _parameters(values, path_item, operation):
        value = _param_value(values, parameter)
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", quote(_form_field(value), safe=""))
        elif parameter["in"] == "query" and parameter.get("required"):
            items = value if isinstance(value, list) else [value]
            query += [(parameter["name"], _form_field(item)) for item in items]
    if "{" in path:
        raise SpecError(f"{key}: a path parameter is not declared")
    types = _success_types(operation)
    if spec_path.endswith("#stream") or types == [SSE]:
        variants = [(SSE, True, key)]
    elif SSE in types and len(types) > 1:
        variants = [(types[0], False, key), (SSE, True, f"{key} (stream)")]
    else:
        variants = [(types[0] if types else "application/json", False, key)]
    for accept, streamed, name in variants:
        content_type, body = _body(values, operation, streamed)
        headers = [("Accept", accept)]
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        yield SpecCall(
            key=name,
            operation_id=str(operation.get("operationId", key)),
            method=method.upper(),
            path=path,
            query=urlencode(query),
            headers=tuple(headers),
            body=body,
            streamed=streamed,
        )
