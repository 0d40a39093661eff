"""Validation of /key request bodies: every error names its field, never the value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from passgate.api.key_schemas import (
    MAX_LIST,
    DeleteKeysRequest,
    GenerateKeyRequest,
    RegenerateKeyRequest,
    UpdateKeyRequest,
)
from passgate.api.key_service import settings_columns
from passgate.api.validation import parse_body
from passgate.auth.keys import generate_key
from passgate.errors import GatewayError

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def error_of(model: type, body: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse_body(model, body)
    return info.value


def test_the_seeds_empty_body_is_valid() -> None:
    assert parse_body(GenerateKeyRequest, b"{}").model_fields_set == set()
    assert parse_body(GenerateKeyRequest, b"").model_fields_set == set()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"max_budget": -1}', "max_budget"),
        (b'{"max_budget": "10"}', "max_budget"),
        (b'{"duration": "forever"}', "duration"),
        (b'{"budget_duration": "1y"}', "budget_duration"),
        (b'{"models": "mistral-small-latest"}', "models"),
        (b'{"models": [1]}', "models.0"),
        (b'{"rpm_limit": 1.5}', "rpm_limit"),
        (b'{"tpm_limit": -5}', "tpm_limit"),
        (b'{"blocked": "yes"}', "blocked"),
        (b'{"metadata": []}', "metadata"),
        (b'{"allowed_routes": ["mistral/v1/ocr"]}', "allowed_routes.0"),
        (b'{"allowed_deployments": "eu-west"}', "allowed_deployments"),
        (b'{"allowed_deployments": ["-eu"]}', "allowed_deployments.0"),
        (b'{"allowed_deployments": ["eu", 7]}', "allowed_deployments.1"),
        (b'{"key": "pk-123"}', "key"),
        (b'{"key_alias": ""}', "key_alias"),
        (b'{"surprise": 1}', "surprise"),
        (b'{"duration": "999999999w"}', "duration"),
        (b'{"budget_duration": "999999999mo"}', "budget_duration"),
        (b'{"metadata": {"n": NaN}}', "metadata"),
        (b'{"metadata": {"n": [Infinity]}}', "metadata"),
        (b'{"metadata": {"n": 18446744073709551616}}', "metadata"),
        (b'{"metadata": {"n\\u0000": 1}}', "metadata"),
        (b'{"metadata": {"n": {"m": "\\u0000"}}}', "metadata"),
    ],
)
def test_wrong_fields_are_422_naming_the_field(body: bytes, field: str) -> None:
    err = error_of(GenerateKeyRequest, body)
    assert err.status == 422
    assert f"'{field}'" in err.message


def test_unknown_fields_say_so() -> None:
    assert "unknown field 'config'" in error_of(GenerateKeyRequest, b'{"config": {}}').message


@pytest.mark.parametrize("body", [b"{", b"[]", b'"x"', b"null"])
def test_bodies_that_are_not_json_objects_are_400(body: bytes) -> None:
    assert error_of(GenerateKeyRequest, body).status == 400


def test_a_bad_key_is_not_quoted_back() -> None:
    secret = "sk-has space " + generate_key()
    err = error_of(GenerateKeyRequest, b'{"key": "%s"}' % secret.encode())
    assert secret not in err.message
    err = error_of(UpdateKeyRequest, b'{"key": "%s"}' % secret.encode())
    assert secret not in err.message and "'key'" in err.message


def test_delete_takes_exactly_one_of_keys_or_key_aliases() -> None:
    assert error_of(DeleteKeysRequest, b"{}").status == 422
    both = b'{"keys": ["sk-a"], "key_aliases": ["a"]}'
    assert "exactly one" in error_of(DeleteKeysRequest, both).message
    assert error_of(DeleteKeysRequest, b'{"keys": []}').status == 422


def test_generate_columns_from_the_fields_given() -> None:
    req = parse_body(
        GenerateKeyRequest,
        b'{"duration": "1h", "budget_duration": "30d", "tags": ["t"], "metadata": {"a": 1}}',
    )
    values = settings_columns(req, {}, NOW)
    assert values["expires"] == NOW + timedelta(hours=1)
    assert values["budget_reset_at"] == NOW + timedelta(days=30)
    assert values["metadata_"] == {"a": 1, "tags": ["t"]}
    assert "models" not in values


def test_update_changes_only_what_is_given_and_null_clears() -> None:
    req = parse_body(
        UpdateKeyRequest, b'{"key": "sk-abc", "max_budget": null, "duration": null, "tags": ["n"]}'
    )
    values = settings_columns(req, {"owner": "x", "tags": ["o"]}, NOW)
    assert values == {
        "max_budget": None,
        "expires": None,
        "metadata_": {"owner": "x", "tags": ["n"]},
    }


def test_regenerate_accepts_a_grace_period_and_a_chosen_key() -> None:
    req = parse_body(
        RegenerateKeyRequest, b'{"key": "sk-old", "new_key": "sk-new", "grace_period": "1h"}'
    )
    assert (req.new_key, req.grace_period) == ("sk-new", "1h")
    assert settings_columns(req, {}, NOW) == {}


def test_metadata_keeps_what_the_database_and_the_encoder_can_hold() -> None:
    body = b'{"metadata": {"big": 9223372036854775807, "small": -9223372036854775808, "f": 1e308}}'
    assert parse_body(GenerateKeyRequest, body).metadata == {
        "big": 2**63 - 1,
        "small": -(2**63),
        "f": 1e308,
    }


@pytest.mark.parametrize(
    "name", ["a", "7", "eu-west", "EU_West.2", "mistral.eu-1", "x" * 64, "0-._"]
)
def test_deployment_names_of_the_config_files_shape_are_accepted(name: str) -> None:
    body = orjson.dumps({"allowed_deployments": [name]})
    assert parse_body(GenerateKeyRequest, body).allowed_deployments == [name]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-eu",
        ".eu",
        "_eu",
        "eu west",
        "eu/west",
        "eu:west",
        "x" * 65,
        "\u00e9u",
        "eu\n",
        "eu\u0000",
    ],
)
def test_other_deployment_names_are_422_without_quoting_them(name: str) -> None:
    err = error_of(GenerateKeyRequest, orjson.dumps({"allowed_deployments": ["ok", name]}))
    assert err.status == 422
    assert "'allowed_deployments.1'" in err.message
    assert not name or name not in err.message


def test_allowed_deployments_are_capped_like_the_other_lists() -> None:
    at_most = orjson.dumps({"allowed_deployments": ["d"] * MAX_LIST})
    assert len(parse_body(GenerateKeyRequest, at_most).allowed_deployments or []) == MAX_LIST
    err = error_of(
        GenerateKeyRequest, orjson.dumps({"allowed_deployments": ["d"] * (MAX_LIST + 1)})
    )
    assert err.status == 422 and "'allowed_deployments'" in err.message


def test_allowed_deployments_are_set_kept_in_order_and_cleared_by_null() -> None:
    made = parse_body(GenerateKeyRequest, b'{"allowed_deployments": ["us", "eu", "us"]}')
    assert settings_columns(made, {}, NOW) == {"allowed_deployments": ["us", "eu", "us"]}
    cleared = parse_body(UpdateKeyRequest, b'{"key": "sk-abc", "allowed_deployments": null}')
    assert settings_columns(cleared, {}, NOW) == {"allowed_deployments": []}
    untouched = parse_body(UpdateKeyRequest, b'{"key": "sk-abc", "rpm_limit": 5}')
    assert "allowed_deployments" not in settings_columns(untouched, {}, NOW)
