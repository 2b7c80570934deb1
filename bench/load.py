"""A lean HTTP/1.1 load generator for the benchmarks, run in a process of its own.

    gen = Generator()                 # starts the generator process (stdlib only)
    result = gen.burst(port, [Group("small", 4, request("/predict", body))], seconds=1.0)
    result["small"]["latencies"]      # seconds, one per request; result["elapsed"]
    gen.close()

Why not threads and ``http.client``: on a 2-core machine the client steals CPU from the
server it measures, and a Python thread per client costs ~100 us+ per request and fights
the GIL with every other thread in the benchmark. Here every client is a coroutine on one
asyncio loop, requests are encoded once, and a response is parsed no further than its
status line and ``Content-Length`` (or chunked framing). The loop runs in a child process
that imports only the standard library, so it shares no GIL with the benchmark driving it.
Connections are opened before a burst's clock starts and kept alive through it.

``python bench/load.py --selftest`` measures the generator's own ceiling against
:func:`trivial_server` (a stdlib asyncio server answering a fixed 200), at 1 and 8 clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

CHILD_FLAG = "--child"


@dataclass
class Group:
    """``clients`` connections, each sending ``raw`` (a whole HTTP request) in a loop."""

    name: str
    clients: int
    raw: bytes


def request(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    """A keep-alive ``POST path`` with a JSON ``body``, encoded once."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def get(path: str, host: str = "127.0.0.1") -> bytes:
    """A keep-alive ``GET path``."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response: (status, body). Only the framing headers are looked at."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"\r\ncontent-length:")
    if i >= 0:
        end = lower.index(b"\r\n", i + 2)
        return status, await reader.readexactly(int(lower[i + 17 : end]))
    if b"\r\ntransfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(parts)
            parts.append(chunk[:-2])
    return status, b""  # e.g. 204: no body


async def _client(conn: tuple, raw: bytes, end: float, lats: list, errors: list) -> None:
    reader, writer = conn
    clock = time.perf_counter
    try:
        while (t := clock()) < end:
            writer.write(raw)
            status, body = await read_response(reader)
            lats.append(clock() - t)
            if status != 200:
                errors.append(f"HTTP {status}: {body[:300]!r}")
                return
    finally:
        writer.close()


async def _burst(port: int, groups: list[dict], seconds: float) -> dict:
    """Connect every client, then start the clock and run them all until ``seconds``."""
    plan = [(g["name"], g["raw"].encode("latin-1")) for g in groups for _ in range(g["clients"])]
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in plan))
    lats: dict[str, list[float]] = {g["name"]: [] for g in groups}
    errors: list[str] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    clients = [
        _client(conn, raw, t0 + seconds, lats[name], errors)
        for conn, (name, raw) in zip(conns, plan)
    ]
    results = await asyncio.gather(*clients, return_exceptions=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    errors += [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "elapsed": elapsed,
        "cpu": cpu,
        "errors": errors,
        **{n: {"latencies": v} for n, v in lats.items()},
    }


def _child() -> None:
    """The generator process: one JSON command per stdin line, one JSON result per line."""
    for line in sys.stdin:
        cmd = json.loads(line)
        out = asyncio.run(_burst(cmd["port"], cmd["groups"], cmd["seconds"]))
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class Generator:
    """The load generator process; :meth:`burst` runs one timed burst in it."""

    def __init__(self) -> None:
        # -S -E: no site packages, no PYTHON* environment: the child imports the stdlib only
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-E", os.path.abspath(__file__), CHILD_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="latin-1",
        )

    def burst(self, port: int, groups: list[Group], seconds: float) -> dict:
        """Run ``groups`` against 127.0.0.1:``port`` for ``seconds``; raise on any non-200.

            Returns ``{"elapsed": s, "cpu": s, name: {"latencies": [s, ...]}, ...}``, ``cpu``
        being the generator's own CPU time during the burst.
        """
        assert self.proc.stdin and self.proc.stdout
        cmd = {"port": port, "seconds": seconds, "groups": []}
        for g in groups:
            cmd["groups"].append({**asdict(g), "raw": g.raw.decode("latin-1")})
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited ({self.proc.wait()})")
        out = json.loads(line)
        if out["errors"]:
            raise RuntimeError(f"request failed during a burst on port {port}: {out['errors'][0]}")
        return out

    def close(self) -> None:
        """Stop the generator process."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(10)

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


async def _trivial(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            i = lower.find(b"\r\ncontent-length:")
            if i >= 0:
                await reader.readexactly(int(lower[i + 17 : lower.index(b"\r\n", i + 2)]))
            writer.write(answer)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def trivial_server(port: int) -> None:
    """Serve a fixed ``200 {}`` on 127.0.0.1:``port`` forever (the generator's ceiling)."""

    async def main() -> None:
        server = await asyncio.start_server(_trivial, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _wrk(port: int, clients: int, seconds: float) -> float | None:
    """wrk's requests/s against the same server (a reference), or None without wrk."""
    import re
    import shutil

    if not shutil.which("wrk"):
        return None
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else None


def selftest(seconds: float = 1.0) -> dict:
    """Requests/s and p50 of the generator against :func:`trivial_server` in another
    process, at 1 and 8 clients: the most the generator can measure on this machine.
    With ``wrk`` on PATH (Debian: ``apt-get install wrk``), wrk's figure beside it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-S", "-E", os.path.abspath(__file__), "--trivial", str(port)]
    )
    try:
        for _ in range(200):  # wait for it to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        body = request("/predict", b'{"records": [{"a": 1}]}')
        figures = {}
        with Generator() as gen:
            gen.burst(port, [Group("warm", 1, body)], 0.2)
            for clients in (1, 8):
                out = gen.burst(port, [Group("c", clients, body)], seconds)
                lats = sorted(out["c"]["latencies"])
                figures[clients] = {
                    "rps": len(lats) / out["elapsed"],
                    "p50_ms": 1000 * lats[len(lats) // 2],
                    "cpu_us_per_request": 1e6 * out["cpu"] / len(lats),
                    "wrk_rps": _wrk(port, clients, seconds),
                }
        return figures
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    if sys.argv[1:] == [CHILD_FLAG]:
        _child()
    elif sys.argv[1:2] == ["--trivial"]:
        trivial_server(int(sys.argv[2]))
    elif sys.argv[1:] == ["--selftest"]:
        for n, fig in selftest().items():
            wrk = f", wrk {fig['wrk_rps']:.0f} req/s" if fig["wrk_rps"] else ""
            print(
                f"{n} client(s): {fig['rps']:.0f} req/s, p50 {fig['p50_ms']:.3f} ms, "
                f"{fig['cpu_us_per_request']:.0f} us of generator CPU per request{wrk}"
            )
    else:
        sys.exit(__doc__)
