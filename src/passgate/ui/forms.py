"""HTML form fields -> the admin API's request models, with errors a person can read.

The models (``GenerateKeyRequest``, ``UserRequest``, ...) validate exactly as the JSON
API does; this module only turns text boxes into the values they take.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from passgate.api.validation import describe
from passgate.ui.context import PageError

Model = TypeVar("Model", bound=BaseModel)

TEXT_FIELDS = ("key_alias", "user_id", "team_id", "end_user_id", "budget_duration", "duration")
INT_FIELDS = ("rpm_limit", "tpm_limit", "max_parallel_requests")
LIST_FIELDS = ("models", "tags", "allowed_routes", "allowed_deployments")
_SPLIT = re.compile(r"[,\s]+")


def invalid_form(message: str) -> PageError:
    """A form that cannot be accepted, and why."""
    return PageError(422, "Please correct the form", message)


def text(form: FormData, name: str) -> str | None:
    """A text field, stripped; None when empty or absent."""
    value = form.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def integer(form: FormData, name: str) -> int | None:
    """A whole-number field; None when empty."""
    value = text(form, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid_form(f"{label(name)}: enter a whole number, like 60.") from None


def decimal(form: FormData, name: str) -> float | None:
    """A number field (a budget in USD); None when empty."""
    value = text(form, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise invalid_form(f"{label(name)}: enter a number, like 12.50.") from None


def items(form: FormData, name: str) -> list[str]:
    """A list typed as words separated by commas, spaces or lines."""
    value = text(form, name)
    return [] if value is None else [part for part in _SPLIT.split(value) if part]


def metadata(form: FormData) -> dict[str, Any] | None:
    """The metadata field: a JSON object, or None when empty."""
    value = text(form, "metadata")
    if value is None:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        raise invalid_form('Metadata: enter a JSON object, like {"owner": "data team"}.') from None
    if not isinstance(found, dict):
        raise invalid_form('Metadata: enter a JSON object, like {"owner": "data team"}.')
    return found


def label(name: str) -> str:
    """A field's name as the form shows it."""
    return name.replace("_", " ").capitalize()


def key_settings(form: FormData, *, creating: bool) -> dict[str, Any]:
    """The key settings in a create or edit form. Creating, empty fields are left out; editing,
    an empty field clears the setting (except the expiry, which an empty field keeps)."""
    fields: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = text(form, name)
        if value is not None or (not creating and name != "duration"):
            fields[name] = value
    for name in INT_FIELDS:
        number = integer(form, name)
        if number is not None or not creating:
            fields[name] = number
    budget = decimal(form, "max_budget")
    if budget is not None or not creating:
        fields["max_budget"] = budget
    for name in LIST_FIELDS:
        values = items(form, name)
        if values or not creating:
            fields[name] = values
    found = metadata(form)
    if found is not None or not creating:
        fields["metadata"] = found or {}
    return fields


def validated(model: type[Model], fields: dict[str, Any]) -> Model:
    """``fields`` checked by the API's request model; its complaints as one readable line."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        message = describe(exc).replace("field '", "").replace("'", "")
        raise invalid_form(message) from None
