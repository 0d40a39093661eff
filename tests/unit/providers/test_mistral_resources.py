"""Mistral's stateful routes, checked against every path of its OpenAPI spec."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from passgate.providers import mistral_resources as rules

SPEC = Path(__file__).resolve().parents[2] / "fixtures" / "mistral" / "openapi.yaml"
_PARAM = re.compile(r"\{([^}]+)\}")
METHODS = ("get", "post", "put", "patch", "delete")

# Operations whose path parameters name nothing a workspace holds, or that are not followed
# on purpose (docs/deployments.md): the organisation's administration, the observability
# explorer's history, RAG settings.
NOT_FOLLOWED = (
    re.compile(r"/v1/admin/"),
    re.compile(
        r"/v1/observability/(chat-completion-events|chat-completion-fields|traces|logs"
        r"|spans)"
    ),
    re.compile(r"/v1/rag/"),
)


@cache
def loaded() -> dict[str, Any]:
    # libyaml's safe loader: the spec is large
    spec: dict[str, Any] = yaml.load(SPEC.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    return spec


@cache
def operations() -> list[tuple[str, str]]:
    spec = loaded()
    found = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                found.append((method.upper(), path.split("#", 1)[0]))
    return sorted(set(found))


def filled(path: str) -> tuple[str, list[str]]:
    """The path with each parameter replaced by a distinct value, and those values."""
    values: list[str] = []

    def fill(match: re.Match[str]) -> str:
        values.append(f"id-{len(values)}-{match.group(1)}")
        return values[-1]

    return _PARAM.sub(fill, path), values


def test_the_spec_is_read() -> None:
    assert len(operations()) > 250


def test_every_path_naming_a_resource_is_followed_to_its_deployment() -> None:
    missed = []
    for method, path in operations():
        concrete, values = filled(path)
        if not values or any(p.search(path) for p in NOT_FOLLOWED):
            continue
        if rules.path_resource(method, concrete) != values[0]:
            missed.append(f"{method} {path}")
    assert missed == []


def test_the_paths_left_out_name_no_followed_resource() -> None:
    for method, path in operations():
        if any(p.search(path) for p in NOT_FOLLOWED):
            concrete, _ = filled(path)
            assert rules.path_resource(method, concrete) is None, path


def test_routes_without_a_resource_are_free() -> None:
    for method, path in (
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("POST", "/v1/agents/completions"),
        ("GET", "/v1/agents/pages"),
        ("POST", "/v1/workflows/executions/terminate"),
        ("GET", "/v1/files"),
    ):
        assert rules.path_resource(method, path) is None, path


def test_a_document_follows_its_library() -> None:
    assert rules.path_resource("GET", "/v1/libraries/L1/documents/D1/status") == "L1"


def test_every_create_call_of_the_spec_is_read_for_new_ids() -> None:
    spec = loaded()
    creators = [
        (path, item["post"])
        for path, item in spec["paths"].items()
        if "post" in item and "{" not in path
    ]
    missed = []
    for path, operation in creators:
        path = path.split("#", 1)[0]
        properties = response_properties(spec, operation)
        key = next((k for k in ("id", "conversation_id") if k in properties), None)
        if key is None or rules.path_resource("GET", path + "/x") != "x":
            continue  # no id in its answer, or not a collection of workspace resources
        if rules.created_resources("POST", path, {key: "new-1"}) != ("new-1",):
            missed.append(path)
    assert missed == []


def response_properties(spec: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    """The top-level properties of a 2xx JSON answer's schema."""
    found: set[str] = set()
    for status, answer in operation.get("responses", {}).items():
        if not str(status).startswith("2"):
            continue
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        found |= set(resolved(spec, schema).get("properties", {}))
    return found


def resolved(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return resolved(spec, node)


def test_created_ids() -> None:
    assert rules.created_resources("POST", "/v1/files", {"id": "f1", "object": "file"}) == ("f1",)
    assert rules.created_resources("POST", "/v1/conversations", {"conversation_id": "c1"}) == (
        "c1",
    )
    job = {"id": "j1", "fine_tuned_model": "ft:open-mistral-7b:abc:2026:1"}
    assert rules.created_resources("GET", "/v1/fine_tuning/jobs/j1", job) == (
        "j1",
        "ft:open-mistral-7b:abc:2026:1",
    )
    assert rules.creates_resources("POST", "/v1/batch/jobs")
    assert not rules.creates_resources("POST", "/v1/chat/completions")
    assert not rules.creates_resources("GET", "/v1/files")
    assert rules.created_resources("POST", "/v1/chat/completions", {"id": "cmpl-1"}) == ()
    assert rules.created_resources("POST", "/v1/files", ["f1"]) == ()
    assert rules.created_resources("POST", "/v1/files", {"id": 7}) == ()


def test_ids_a_request_body_names() -> None:
    assert rules.referenced_resources(
        "POST", "/v1/batch/jobs", {"input_files": ["f1", "f2"], "model": "ft:m:1"}
    ) == ("ft:m:1", "f1", "f2")
    assert rules.referenced_resources(
        "POST",
        "/v1/fine_tuning/jobs",
        {"training_files": [{"file_id": "t1", "weight": 1}], "validation_files": ["v1"]},
    ) == ("t1", "v1")
    assert rules.referenced_resources("POST", "/v1/conversations", {"agent_id": "ag_1"}) == (
        "ag_1",
    )
    assert rules.referenced_resources(
        "POST", "/v1/ocr", {"document": {"type": "file", "file_id": "f9"}}
    ) == ("f9",)
    assert rules.referenced_resources("POST", "/v1/chat/completions", {"model": "small"}) == ()
    assert rules.referenced_resources("GET", "/v1/files", {"agent_id": "a"}) == ()


def test_listings_go_to_the_primary() -> None:
    for path in (
        "/v1/files",
        "/v1/batch/jobs",
        "/v1/agents",
        "/v1/agents/pages",
        "/v1/conversations",
        "/v1/libraries",
        "/v1/fine_tuning/jobs",
    ):
        assert rules.is_listing("GET", path), path
    for method, path in (
        ("GET", "/v1/models"),
        ("GET", "/v1/files/f1"),
        ("POST", "/v1/files"),
        ("POST", "/v1/chat/completions"),
    ):
        assert not rules.is_listing(method, path), path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "agent_id",
                    "input_files",
                    "training_files",
                    "document",
                    "file_id",
                    "model",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "x"]), st.text(max_size=60), json_values)
def test_the_rules_never_raise(method: str, path: str, value: Any) -> None:
    found = rules.path_resource(method, path)
    assert found is None or isinstance(found, str)
    assert all(isinstance(i, str) for i in rules.created_resources(method, path, value))
    assert all(isinstance(i, str) for i in rules.referenced_resources(method, path, value))
    assert isinstance(rules.is_listing(method, path), bool)
    assert isinstance(rules.creates_resources(method, path), bool)


@pytest.mark.parametrize("path", ["/v1/files/", "/v1/files//content", "/", ""])
def test_empty_segments_name_nothing(path: str) -> None:
    assert rules.path_resource("GET", path) is None
