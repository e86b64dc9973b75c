"""A real HTTP server on 127.0.0.1 for download tests, with HTTP Range support and fault injection.

Python's SimpleHTTPRequestHandler ignores Range headers; this one honours `bytes=N-`, can cut its
first `drop_first` responses short to simulate a connection dropped mid-stream, and can trickle.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from functools import partial
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
        pass

    def do_GET(self):
        spec = self.headers.get("Range", "")
        self.server.requests.append(spec)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if spec.startswith("bytes="):
            start = int(spec[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.trickle_s:
            for i in range(0, len(body), 16 << 10):
                self.wfile.write(body[i:i + (16 << 10)])
                self.wfile.flush()
                time.sleep(self.server.trickle_s)
            return
        if self.server.drops_left > 0:
            self.server.drops_left -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve(directory: Path, drop_first: int = 0, trickle_s: float = 0.0):
    """Serve `directory` on 127.0.0.1 (free port); yield the base URL and the server.

    drop_first: cut that many responses off halfway. trickle_s: send 16 KiB, then sleep this long.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(directory)))
    server.drops_left = drop_first
    server.trickle_s = trickle_s
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server
    finally:
        server.shutdown()
        server.server_close()
