"""Which Mistral routes create, name and list the resources a workspace holds.

Files, batch and fine-tuning jobs, fine-tuned models, agents, conversations, libraries (and
their documents), voices, prompts, skills, observability judges, campaigns and datasets,
connectors and workflows exist only on the workspace (the deployment) that created them.
The collections below are read off Mistral's OpenAPI spec; a unit test checks every path
of the spec with a parameter against them.

Left out on purpose: ``/v1/admin/...`` (the organisation's users, workspaces and keys: an
administrator's calls, made with an admin key against one organisation), and the
observability explorer's events, traces, spans and fields (a workspace's history, not
resources a call creates).
"""

from __future__ import annotations

from typing import Any

# (version, collection segments...) whose next path segment is a resource id
_COLLECTIONS = frozenset(
    {
        ("v1", "files"),
        ("v1", "batch", "jobs"),
        ("v1", "fine_tuning", "jobs"),
        ("v1", "fine_tuning", "models"),
        ("v1", "models"),
        ("v1", "agents"),
        ("v1", "conversations"),
        ("v1", "libraries"),
        ("v1", "audio", "voices"),
        ("v1", "observability", "judges"),
        ("v1", "observability", "campaigns"),
        ("v1", "observability", "datasets"),
        ("v1", "observability", "dataset-records"),
        ("v1", "connectors"),
        ("v1", "workflows"),
        ("v1", "workflows", "executions"),
        ("v1", "workflows", "runs"),
        ("v1", "workflows", "schedules"),
        ("v1", "workflows", "deployments"),
        ("v1", "workflows", "registrations"),
        ("v2", "prompts"),
        ("v2", "skills"),
    }
)
_LONGEST = max(len(c) for c in _COLLECTIONS)
# Path segments under a collection that name a route, not a resource (``/v1/agents/pages``).
_NOT_IDS = frozenset(
    {
        "pages",
        "completions",
        "terminate",
        "cancel",
        "executions",
        "runs",
        "schedules",
        "deployments",
        "registrations",
        "events",
        "archive",
        "unarchive",
        "jobs",
        "models",
    }
)
# Listing these is listing what one workspace holds (GET /v1/models is not: every workspace
# serves the base models, so it may go to any).
_LISTED = _COLLECTIONS - {("v1", "models"), ("v1", "fine_tuning", "models")}
_LISTED_PAGES = frozenset({("v1", "agents", "pages")})
# the keys of a create call's answer that carry the new resource's id
_CREATED_KEYS = ("id", "conversation_id", "fine_tuned_model")
_FINE_TUNED = "ft:"


def _segments(api_path: str) -> tuple[str, ...]:
    return tuple(api_path.strip("/").split("/"))


def path_resource(method: str, api_path: str) -> str | None:
    """The id of the workspace-held resource a path names, else None; of several (a
    library's document), the outermost: the document lives where its library does."""
    parts = _segments(api_path)
    for size in range(2, min(_LONGEST, len(parts) - 1) + 1):
        if parts[:size] in _COLLECTIONS:
            found = parts[size]
            if found and found not in _NOT_IDS:
                return found
    return None


def creates_resources(method: str, api_path: str) -> bool:
    """Whether a successful answer may introduce resource ids: a POST to a collection (a
    file, a job, an agent, a conversation ...), and a fine-tuning job's answers (which name
    the fine-tuned model once it exists)."""
    parts = _segments(api_path)
    if method == "POST" and parts in _COLLECTIONS:
        return True
    return parts[:3] == ("v1", "fine_tuning", "jobs") and method in ("GET", "POST")


def created_resources(method: str, api_path: str, answer: Any) -> tuple[str, ...]:
    """The ids a successful answer (parsed JSON) to such a call introduces."""
    if not isinstance(answer, dict) or not creates_resources(method, api_path):
        return ()
    found = []
    for key in _CREATED_KEYS:
        value = answer.get(key)
        if isinstance(value, str) and value:
            found.append(value)
    return tuple(found)


def _file_ids(value: Any) -> list[str]:
    """File ids from a list of ids or of ``{"file_id": ...}`` entries."""
    found: list[str] = []
    if not isinstance(value, list):
        return found
    for item in value:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict) and isinstance(item.get("file_id"), str):
            found.append(item["file_id"])
    return found


# the routes whose bodies may name resources besides a fine-tuned model
_REFERENCING = frozenset(
    {
        "/v1/agents/completions",
        "/v1/conversations",
        "/v1/batch/jobs",
        "/v1/fine_tuning/jobs",
        "/v1/ocr",
    }
)


def referenced_resources(method: str, api_path: str, body: Any) -> tuple[str, ...]:
    """The ids of workspace-held resources a request body names: a fine-tuned model
    (``model`` ``ft:...``, on any route), an agent (``agent_id``), a batch's or a fine-tuning
    job's files, an OCR document's file."""
    if method != "POST" or not isinstance(body, dict):
        return ()
    model = body.get("model")
    tuned = model if isinstance(model, str) and model.startswith(_FINE_TUNED) else None
    if api_path not in _REFERENCING:  # chat, embeddings, ...: the model alone
        return () if tuned is None else (tuned,)
    found: list[str] = []
    agent = body.get("agent_id")
    if isinstance(agent, str):
        found.append(agent)
    if tuned is not None:
        found.append(tuned)
    for key in ("input_files", "training_files", "validation_files"):
        found.extend(_file_ids(body.get(key)))
    document = body.get("document")
    if isinstance(document, dict) and isinstance(document.get("file_id"), str):
        found.append(document["file_id"])
    return tuple(i for i in found if i)


def is_listing(method: str, api_path: str) -> bool:
    """Whether the call lists a collection of workspace-held resources (it goes to the
    primary deployment)."""
    if method != "GET":
        return False
    parts = _segments(api_path)
    return parts in _LISTED or parts in _LISTED_PAGES
