"""The ``x-request-id`` rule every response of the gateway follows.

A caller's id is echoed when it is sane (what a log line or a header can carry
without escaping: letters, digits and ``._:-``, at most 128 of them); otherwise the
response carries an id of the gateway's own.
"""

from __future__ import annotations

import re

from passgate.exchange import new_call_id
from passgate.types import Scope

SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
HEADER = b"x-request-id"
# where the admin app's middleware leaves the id it answers with, for whatever logs the call
SCOPE_KEY = "passgate.request_id"


def response_request_id(sent: bytes | None) -> bytes:
    """The id to answer with: ``sent`` when it is sane, else a fresh one."""
    if sent is not None and SANE_REQUEST_ID.match(sent):
        return sent
    return new_call_id().encode()


def request_id_for(scope: Scope) -> bytes:
    """The id a response to the HTTP request ``scope`` carries: the caller's when sane."""
    sent = next((value for name, value in scope["headers"] if name == HEADER), None)
    return response_request_id(sent)
