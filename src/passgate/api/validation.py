"""Reading admin request bodies and query strings into pydantic models.

Errors name the field and never quote the value (a value may be a key).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from passgate import errors
from passgate.errors import GatewayError

Model = TypeVar("Model", bound=BaseModel)
MAX_ADMIN_BODY = 1024 * 1024


def invalid(message: str) -> GatewayError:
    """A 422 for a request that is well-formed JSON but has a wrong field."""
    return GatewayError(422, message, "invalid_request_error", "invalid_field")


def describe(exc: ValidationError, where: str = "field") -> str:
    """One line per problem, each naming the field (never the value given)."""
    problems = []
    for item in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown {where} '{name}'")
            continue
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where} '{name}': {message}" if name else message)
    return "; ".join(problems)


async def read_body(request: Request, limit: int = MAX_ADMIN_BODY) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.too_large(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(model: type[Model], raw: bytes) -> Model:
    """Validate a JSON body (an empty body counts as ``{}``)."""
    try:
        return model.model_validate_json(raw.strip() or b"{}")
    except ValidationError as exc:
        kinds = {item["type"] for item in exc.errors(include_input=False, include_url=False)}
        if "json_invalid" in kinds:
            raise errors.bad_request("request body is not valid JSON", "invalid_json") from None
        if "model_type" in kinds:
            raise errors.bad_request("request body must be a JSON object", "invalid_json") from None
        raise invalid(describe(exc)) from None


def parse_query(model: type[Model], request: Request) -> Model:
    """Validate the query string; a parameter given twice is refused."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise invalid(f"query parameter '{name}' is given more than once")
        params[name] = value
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise invalid(describe(exc, "query parameter")) from None
