"""Read what enforcement and accounting need from a copy of the request body.

The body that goes upstream is never the parsed form: these functions only look.
A body that cannot be parsed yields an empty ``RequestInfo``, never an error.
"""

from __future__ import annotations

from typing import Any

import orjson
from python_multipart.multipart import MultipartParser

from passgate.exchange import RequestInfo

_FIELD_CAP = 256  # longest multipart text field kept (model names are short)


# where APIs put the most output a call may produce: chat completions (old and new name),
# the responses API, and a generation config object
_MAX_TOKENS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _max_tokens(data: dict[str, Any]) -> int | None:
    for name in _MAX_TOKENS:
        found = _whole(data.get(name))
        if found is not None:
            return found
    config = data.get("generationConfig")
    return _whole(config.get("maxOutputTokens")) if isinstance(config, dict) else None


def _info_from_mapping(data: dict[str, Any]) -> RequestInfo:
    info = RequestInfo(body=data)
    model = data.get("model")
    if isinstance(model, str):
        info.model = model
    info.stream = data.get("stream") is True
    info.max_tokens = _max_tokens(data)
    text = data.get("input")
    if isinstance(text, str):
        info.input_chars = len(text)
    info.annotations = (
        data.get("bbox_annotation_format") is not None
        or data.get("document_annotation_format") is not None
    )
    return info


def inspect_json(body: bytes) -> RequestInfo:
    """Model, stream flag, max_tokens and the like from a JSON body; empty when unparseable."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return RequestInfo()
    if isinstance(data, dict):
        return _info_from_mapping(data)
    return RequestInfo()


def boundary_of(content_type: bytes) -> bytes | None:
    """The multipart boundary named in a Content-Type value, if any."""
    if not content_type.lower().startswith(b"multipart/form-data"):
        return None
    for param in content_type.split(b";")[1:]:
        key, _, value = param.strip().partition(b"=")
        if key.lower() == b"boundary" and value:
            return value.strip(b'"')
    return None


class MultipartFields:
    """Streams a multipart body through a real multipart parser, keeping small text fields.

    Only the ``model`` and ``stream`` fields are kept; file parts are skipped as
    they pass, so memory stays bounded whatever the body's size.
    """

    def __init__(self, boundary: bytes) -> None:
        self.fields: dict[str, str] = {}
        self._name: str | None = None
        self._header: bytes = b""
        self._value = bytearray()
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )
        self.failed = False

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the body; a malformed body just stops the parsing."""
        if self.failed:
            return
        try:
            self._parser.write(chunk)
        except Exception:  # the body is relayed as is; a parse error only ends inspection
            self.failed = True

    @property
    def model(self) -> str | None:
        return self.fields.get("model")

    def info(self) -> RequestInfo:
        """The fields seen so far as a ``RequestInfo``."""
        return RequestInfo(model=self.model, stream=self.fields.get("stream") == "true")

    def _part_begin(self) -> None:
        self._name = None
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header = data[start:end].lower()

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        if self._header != b"content-disposition":
            return
        for param in data[start:end].split(b";")[1:]:
            key, _, value = param.strip().partition(b"=")
            if key.lower() == b"name":
                self._name = value.strip(b'"').decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name in ("model", "stream") and len(self._value) < _FIELD_CAP:
            self._value += data[start:end]

    def _part_end(self) -> None:
        if self._name in ("model", "stream"):
            self.fields[self._name] = self._value[:_FIELD_CAP].decode("utf-8", "replace").strip()
        self._name = None
