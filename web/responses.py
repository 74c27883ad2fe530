"""HTTP responses of the gateway: JSON bodies, errors, static files and their types.

Every response closes its connection (websockets serves one request per connection
outside the websocket handshake) and is never cached; ``docs/PROTOCOL.md`` ("HTTP").
"""

from __future__ import annotations

import email.utils
import http
import mimetypes
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.http11 import Response

from callcost.web.wire import encode, show

#: the pages and their files
STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
JSON = "application/json"
#: the Prometheus text format (``/metrics``)
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def response(
    status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    code = http.HTTPStatus(status)
    h = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
            *headers,
        ]
    )
    return Response(code.value, code.phrase, h, body)


def json_response(status: int, data: Any) -> Response:
    return response(status, encode(data), JSON)


def error_response(status: int, code: str, message: str, **headers: str) -> Response:
    """``{"error": code, "message": message}``; ``headers`` with ``_`` for ``-``."""
    return response(
        status,
        encode({"error": code, "message": message}),
        JSON,
        [(k.replace("_", "-"), v) for k, v in headers.items()],
    )


def serialized(resp: Response) -> bytes:
    """``resp`` as the bytes of an HTTP/1.1 response, for a connection websockets does
    not answer itself."""
    head = f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}\r\n".encode()
    return head + resp.headers.serialize() + resp.body


def static_file(root: Path, name: str) -> Response:
    """The file ``name`` under ``root``, or 404; never anything outside ``root``."""
    name = unquote(name)
    if not name or "\x00" in name or "\\" in name:
        return error_response(404, "not_found", f"no static file {show(name)}")
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError):
        return error_response(404, "not_found", f"no static file {show(name)}")
    if not path.is_relative_to(root) or not path.is_file():
        return error_response(404, "not_found", f"no static file {show(name)}")
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return response(200, path.read_bytes(), content_type)
