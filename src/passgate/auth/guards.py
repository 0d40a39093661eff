"""What a virtual key may call: its ``allowed_routes`` and ``models`` allowlists."""

from __future__ import annotations

from collections.abc import Iterable

from passgate import errors
from passgate.exchange import Exchange

# Requests without a body name no model, so a model allowlist cannot apply to them.
BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
MAX_ECHO = 200  # a model name is the caller's text: quote a bounded amount of it


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def route_allowed(route: str, prefixes: Iterable[str]) -> bool:
    """True when ``route`` is one of the prefixes or lies below one (by whole segments).

    ``/mistral/v1/ocr`` admits ``/mistral/v1/ocr`` and ``/mistral/v1/ocr/x`` but not
    ``/mistral/v1/ocrx``; a prefix ending in ``/`` or ``*`` admits anything after it.
    """
    for prefix in prefixes:
        if prefix.endswith(("*", "/")):
            if route.startswith(prefix.rstrip("*")):
                return True
        elif route == prefix or route.startswith(prefix + "/"):
            return True
    return False


def model_allowed(model: str, allowed: Iterable[str]) -> bool:
    """True when ``model`` is listed, or matches an entry ending in ``*`` as a prefix."""
    for entry in allowed:
        if entry == model or entry == "*":
            return True
        if entry.endswith("*") and model.startswith(entry[:-1]):
            return True
    return False


class KeyAccessGuard:
    """Refuses a virtual key's call outside its routes (403) or models (403/400).

    Implements ``proxy.hooks.Guard``; the master key and an open gateway pass.
    """

    async def admit(self, ex: Exchange) -> None:
        """Raise ``GatewayError`` when the key may not make this call."""
        principal = ex.principal
        if principal is None or principal.kind != "virtual":
            return
        if principal.allowed_routes and not route_allowed(ex.route, principal.allowed_routes):
            raise errors.forbidden(
                f"This key may not call {_clip(ex.route)}; its allowed routes are: "
                + ", ".join(principal.allowed_routes),
                "route_not_allowed",
            )
        if not principal.models or ex.method.upper() in BODYLESS_METHODS:
            return
        model = ex.info.model
        if model is None:
            raise errors.bad_request(
                "could not read the model of this request (a 'model' field in the JSON "
                "body or multipart form); this key may only call: " + ", ".join(principal.models),
                "model_unreadable",
            )
        if not model_allowed(model, principal.models):
            raise errors.forbidden(
                f"This key may not use model '{_clip(model)}'; its allowed models are: "
                + ", ".join(principal.models),
                "model_not_allowed",
            )
