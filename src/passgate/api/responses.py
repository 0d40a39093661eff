"""JSON responses of the admin API (errors become responses in ``passgate.api.boundary``)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response (datetimes as ISO 8601)."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")
