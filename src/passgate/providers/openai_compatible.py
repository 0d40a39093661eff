"""Servers that speak OpenAI's API (vLLM, SGLang, Ollama, TGI, ...): the routes, usage and
stream shapes of ``providers/openai.py``, under another name, prefix, base URL and key.

``OpenAICompatibleSpec`` is the class; ``compatible_spec`` makes one for a name, prefix, base
URL and credential header. vLLM is built in at ``/vllm`` (``HOSTED_VLLM_API_BASE``, an optional
``HOSTED_VLLM_API_KEY``, LiteLLM's names). Such servers run models of their operator's choosing:
their catalog ships empty, and prices come from the config file's ``pricing:`` section
(``vllm/<model>`` names one server's model); a model without one is logged as unpriced and
its calls are recorded with a null cost.
"""

from __future__ import annotations

from typing import ClassVar

from passgate.providers.openai import OpenAIShapes

BEARER = "Authorization"
# the config file's list of named servers (docs/providers/openai.md)
SECTION = "openai_compatible"


class OpenAICompatibleSpec(OpenAIShapes):
    """A server answering in OpenAI's shapes; subclasses name it (``compatible_spec``)."""

    # the header carrying the server's key upstream; Authorization means a bearer token
    credential_header: ClassVar[str] = BEARER
    prices_file: ClassVar[str] = "openai_compatible.json"  # empty: priced from the config

    def credential(self, key: str) -> tuple[str, str]:
        """A bearer token in ``Authorization``, else the key itself in the named header."""
        if self.credential_header.lower() == BEARER.lower():
            return (BEARER, "Bearer " + key)
        return (self.credential_header, key)


class VllmSpec(OpenAICompatibleSpec):
    """A vLLM server (``vllm serve``), as LiteLLM's ``hosted_vllm`` provider names it."""

    name: ClassVar[str] = "vllm"
    prefix: ClassVar[bytes] = b"/vllm"
    gen_ai_system: ClassVar[str] = "vllm"
    # where ``vllm serve`` listens unless told otherwise
    default_base: ClassVar[str] = "http://localhost:8000"
    base_env: ClassVar[tuple[str, ...]] = ("HOSTED_VLLM_API_BASE",)
    key_env: ClassVar[tuple[str, ...]] = ("HOSTED_VLLM_API_KEY",)


def compatible_spec(
    name: str, prefix: str, api_base: str, credential_header: str = BEARER
) -> OpenAICompatibleSpec:
    """A spec for one named OpenAI-compatible server (declared in the config file)."""
    attributes = {
        "name": name,
        "prefix": prefix.encode("ascii"),
        "gen_ai_system": name,
        "default_base": api_base,
        "base_env": (),
        "key_env": (),
        "credential_header": credential_header,
    }
    cls = type(f"CompatibleSpec_{name}", (OpenAICompatibleSpec,), attributes)
    spec: OpenAICompatibleSpec = cls()
    return spec
