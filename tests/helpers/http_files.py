"""A local HTTP file server that wants credentials, for tests of what a secret-bearing URL leaves behind.

    with serve_folder(folder) as server:
        server.url("a.tif", token=True)    http://127.0.0.1:PORT/a.tif?token=TOKEN&style=x
        server.url("a.tif", userinfo=True) http://USER:PASSWORD@127.0.0.1:PORT/a.tif

Files are served with HTTP range requests (what GDAL's /vsicurl/ reads with) only to a request that carries
the token or the basic-auth user and password; anything else gets 403. So a run that reads through such a
URL really used its secret, and the test can then look for the secret in everything the run wrote or printed.
`server.busy(name, count)` makes the next `count` requests for a file answer 503 (a server under load).
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

USER, PASSWORD, TOKEN = "bob", "hunter2pw", "TOKEN9secret"
SECRETS = (PASSWORD, TOKEN)  # the user name is no secret on its own, but is not written either (see provenance)


@dataclass
class FileServer:
    port: int
    folder: Path
    busy_left: dict[str, int]  # file name -> how many more requests answer 503

    def busy(self, name: str, count: int) -> None:
        self.busy_left[name] = count

    def url(self, name: str, *, token: bool = False, userinfo: bool = False) -> str:
        authority = f"{USER}:{PASSWORD}@" if userinfo else ""
        query = f"?token={TOKEN}&style=x" if token else ""
        return f"http://{authority}127.0.0.1:{self.port}/{name}{query}"


def _handler(folder: Path, busy_left: dict[str, int]) -> type[BaseHTTPRequestHandler]:
    expected_auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name; no request log
            pass

        def _allowed(self) -> bool:
            token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            return token == TOKEN or self.headers.get("Authorization") == expected_auth

        def _answer(self, body: bool) -> None:
            if not self._allowed():
                self.send_error(403)
                return
            name = urlsplit(self.path).path.lstrip("/")
            if busy_left.get(name, 0) > 0:
                busy_left[name] -= 1
                self.send_error(503)
                return
            path = folder / name
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start, end, status = 0, len(data) - 1, 200
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                first, _, last = ranged[len("bytes=") :].partition("-")
                start = int(first or 0)
                end = min(int(last), len(data) - 1) if last else len(data) - 1
                status = 206
            chunk = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if body:
                self.wfile.write(chunk)

        def do_HEAD(self) -> None:  # noqa: N802 - http.server API
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self._answer(body=True)

    return Handler


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[FileServer]:
    """Serve `folder` on 127.0.0.1 (a free port) while the block runs."""
    busy_left: dict[str, int] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(folder, busy_left))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(server.server_address[1], folder, busy_left)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
