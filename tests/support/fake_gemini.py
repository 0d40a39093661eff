"""A fake Gemini API (Google AI Studio): a real HTTP server on loopback that records every request.

    with FakeGemini() as up:                      # up.url == "http://127.0.0.1:PORT"
        ... call up.url (or a gateway pointed at it) with up.api_key ...
        record = up.last                          # method, raw_path, headers, body, ...

It shares the fake Mistral upstream's plumbing (recording, fault knobs such as
``stream_events``, ``cut_stream_after``, canned responses with ``set_response``) and answers
Google's routes (see fake_gemini_routes) with the fixed usage of fake_gemini_payloads.
"""

from typing import Any

from tests.support.fake_gemini_payloads import API_KEY
from tests.support.fake_gemini_routes import GeminiFile, GeminiRouter, GeminiStore
from tests.support.fake_mistral import TlsServing
from tests.support.fake_mistral_state import Recorded
from tests.support.fake_server import FakeServer

__all__ = ["API_KEY", "FakeGemini"]


class FakeGemini(FakeServer):
    """The fake Gemini upstream; only ``api_key`` is accepted as a credential."""

    def __init__(
        self, *, api_key: str = API_KEY, tls: TlsServing | None = None, **knobs: Any
    ) -> None:
        self.api_key = api_key
        self._store = GeminiStore(api_key)
        options = None if tls is None else tls.uvicorn_options()
        super().__init__("gemini", GeminiRouter(self._store), server_options=options, **knobs)

    @property
    def last(self) -> Recorded:
        """The most recent request (its body may still be arriving)."""
        if not self._state.requests:
            raise AssertionError("the fake Gemini upstream has received no request")
        return self._state.requests[-1]

    @property
    def uploaded(self) -> dict[str, GeminiFile]:
        """Files uploaded so far, by id."""
        return self._store.files

    def reset(self) -> None:
        """Forget requests, canned responses and files; restore the default knobs."""
        super().reset()
        self._store.files.clear()
        self._store.uploads.clear()
