"""bench/load.py, the benchmarks' load generator, against a stdlib HTTP/1.1 server."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_load", Path(__file__).resolve().parent.parent / "bench" / "load.py"
)
load = sys.modules["bench_load"] = importlib.util.module_from_spec(_spec)  # for @dataclass
_spec.loader.exec_module(load)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK wait
    connections = 0

    def setup(self):
        type(self).connections += 1
        super().setup()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 503 if self.path == "/fail" else 200
        answer = b"busy" if status == 503 else b'{"n": %d}' % len(body)
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.connections = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_a_burst_times_every_request_on_one_kept_alive_connection_per_client(server):
    with load.Generator() as gen:
        out = gen.burst(
            server,
            [
                load.Group("a", 2, load.request("/predict", b'{"x": 1}')),
                load.Group("b", 1, load.request("/predict", b"{}")),
            ],
            0.2,
        )
    assert out["elapsed"] >= 0.2
    # several requests per connection (a busy machine may allow few in 0.2 s)
    assert len(out["a"]["latencies"]) >= 4 and len(out["b"]["latencies"]) >= 2
    assert all(0 < x < 0.2 for x in out["a"]["latencies"] + out["b"]["latencies"])
    assert Handler.connections == 3


def test_a_non_200_answer_fails_the_burst_and_says_what_came_back(server):
    with load.Generator() as gen, pytest.raises(RuntimeError, match=r"HTTP 503: b'busy'"):
        gen.burst(server, [load.Group("a", 1, load.request("/fail", b"{}"))], 0.2)


def test_read_response_reads_content_length_and_chunked_bodies():
    async def parse(raw: bytes):
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return [await load.read_response(reader), await load.read_response(reader)]

    raw = (
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        b"HTTP/1.1 422 Unprocessable\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"
    )
    assert asyncio.run(parse(raw)) == [(200, b"hello"), (422, b"abcde")]
