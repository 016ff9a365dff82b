"""Load test of the service on loopback: start it with uvicorn (127.0.0.1, a free port) and
measure latency and throughput, micro-batching on and off.

    .venv/bin/python bench/serve_load.py                       # 30 s per concurrency level
    .venv/bin/python bench/serve_load.py --seconds 5 --levels 1 8 64
    .venv/bin/python bench/serve_load.py --soak 5               # + 5 minutes at 64 clients
    .venv/bin/python bench/serve_load.py --wrk                  # levels driven by wrk (C)

What is measured (every request: POST /api/translate, greedy, attention in the response):

1. single request: the p50/p90 of sequential requests for one 10-word sentence;
2. for micro-batching on, then off (a fresh server each), 1, 8, 32, 64 concurrent
   clients (closed loop: each sends its next request when the last one answered) for
   ``--seconds`` each, sentences of 8 to 12 words: requests/s, p50, p99, errors;
3. with ``--soak MINUTES``: 64 clients for that long (batching on): errors and the
   server's resident memory growth (VmRSS, after a warm-up, to the end).

Bounded in time and count: every phase stops at its duration or ``--max-requests``, each
request times out after 10 s, and the server is stopped at the end. Never part of the
test run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
HOST = "127.0.0.1"  # loopback only
REQUEST_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def sentences() -> tuple[str, list[str]]:
    """A 10-word English sentence, and the English sentences of 8 to 12 words."""
    english: list[str] = []
    for name in ("test.tsv", "valid.tsv", "train.tsv"):
        path = SAMPLE / name
        if path.exists():
            english += [line.split("\t")[0] for line in path.read_text("utf-8").splitlines()]
    pool = [s for s in english if 8 <= len(s.split()) <= 12]
    ten = next((s for s in english if len(s.split()) == 10), None)
    if ten is None or not pool:
        raise SystemExit(f"no sentences of 8-12 words in {SAMPLE}")
    return ten, pool[:500]


@dataclass
class Server:
    """The service in a child process (python -m attnviz.app.server)."""

    models_dir: Path
    micro_batch: bool
    model: str | None
    shortlist: bool = False  # requests ask for the model's lexical shortlist
    int8: bool = False  # requests ask for the int8 output layer
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path = Path(os.devnull)  # its output, once started

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def processes(self) -> int:
        return int(self.extra_env.get("ATTNVIZ_PROCESSES", "1"))

    @property
    def template(self) -> dict[str, object]:
        """What every translate request asks for, but its text."""
        return {
            "model": self.model,
            "beam_size": 1,
            "shortlist": self.shortlist,
            "int8": self.int8,
        }

    def start(self, timeout: float = 180.0) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "ATTNVIZ_HOST": HOST,
            "ATTNVIZ_PORT": str(self.port),
            "ATTNVIZ_MODELS_DIR": str(self.models_dir),
            "ATTNVIZ_MICRO_BATCH": "true" if self.micro_batch else "false",
            "ATTNVIZ_LOG_REQUESTS": "false",
            **self.extra_env,
        }
        self.log = Path(tempfile.mkdtemp(prefix="attnviz-serve-")) / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attnviz.app.server"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),  # a file: an unread pipe can fill and block it
            start_new_session=True,  # its worker processes too can be stopped as a group
        )

        def ready() -> bool:
            r = httpx.get(f"{self.url}/api/health", timeout=2.0)
            if r.status_code != 200:
                return False
            health = r.json()
            if self.model is None:
                self.model = health["default_model"]
            elif self.model not in health["models"]:
                raise SystemExit(f"model {self.model!r} not served: {health['models']}")
            return True

        try:
            if not wait_ready(self.process, ready, self.log, timeout):
                raise SystemExit(f"the server did not answer /api/health within {timeout:.0f} s")
            if self.processes > 1:  # the first process answered; the others may still load
                self._settle(self.processes)
        except BaseException:
            self.stop()
            raise

    def _settle(self, processes: int, timeout: float = 300.0) -> None:
        """Wait until every worker process has logged that it started (models loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = set()
            for line in self.log.read_text(errors="replace").splitlines(keepends=True):
                if line.startswith("{") and line.endswith("\n"):
                    event = json.loads(line)
                    if event.get("event") == "started":
                        started.add(event.get("process"))
            if len(started) >= processes:
                return
            time.sleep(0.5)
        raise SystemExit(f"{processes} server processes did not all start in {timeout:.0f} s")

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes (``--processes``)."""
        assert self.process is not None
        pids = [self.process.pid]
        for pid in pids:  # grows as children are found
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
                children = [c for t in tasks for c in (t / "children").read_text().split()]
            except FileNotFoundError:  # it has exited since it was listed
                continue
            pids += [int(c) for c in children if int(c) not in pids]
        kb = 0
        for pid in pids:  # VmRSS: with several processes, shared pages count in each
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:  # it has exited since it was listed
                continue
            kb += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
            )
        return kb / 1024.0

    def stop(self) -> None:
        stop_child(self.process)


def wait_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, timeout: float
) -> bool:
    """Poll ``ready`` until it says yes (True) or ``timeout`` passes (False); stop with the
    tail of ``log`` if the child exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{process.args!r} exited ({process.returncode}):\n{tail}")
        try:
            if ready():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def stop_child(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a server child as Ctrl-C would (SIGINT), killing it and its process group
    (worker processes; it is started in a session of its own) after 20 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Result:
    name: str
    clients: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    batch: str = ""
    mean_batch: float = float("nan")  # sentences per model batch on the server
    counted: int | None = None  # wrk: answered requests (it keeps no latency list)
    percentiles: dict[float, float] = field(default_factory=dict)  # wrk's, in ms

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) if self.counted is None else self.counted

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def pct(self, q: float) -> float:
        if q in self.percentiles:
            return self.percentiles[q]
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, round(q / 100.0 * (len(xs) - 1)))]


def batch_totals(url: str) -> tuple[float, float]:
    """(sentences, batches) the server has run so far, from /metrics."""
    sentences = batches = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=REQUEST_TIMEOUT).text.splitlines():
        if line.startswith("attnviz_batch_sentences_sum"):
            sentences += float(line.rsplit(" ", 1)[1])
        elif line.startswith("attnviz_batch_sentences_count"):
            batches += float(line.rsplit(" ", 1)[1])
    return sentences, batches


def body(text: str, template: dict[str, object]) -> dict[str, object]:
    """A translate request: ``template`` (model and options) with ``text``."""
    return {**template, "text": text}


async def _clients(
    url: str,
    template: dict[str, object],
    texts: Sequence[str],
    ids: Sequence[int],
    stride: int,
    start_at: float,
    seconds: float,
    max_requests: int,
) -> tuple[list[float], int, float]:
    """Workers ``ids``, each with its own connection (one httpx client each: a shared
    pool of 64 connections costs the client more CPU than the server spends), each
    posting its next request when the previous one answered, from ``start_at`` (wall
    clock) for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=url, limits=one, timeout=REQUEST_TIMEOUT) for _ in ids]
    try:
        await asyncio.gather(*(c.get("/api/health") for c in clients))  # connect first
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop_at = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient, k: int) -> None:
            nonlocal errors, sent
            i = k
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                try:
                    request = body(texts[i % len(texts)], template)
                    r = await client.post("/api/translate", json=request)
                    ok = r.status_code == 200 and r.json().get("attention") is not None
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000.0)
                else:
                    errors += 1
                i += stride

        began = time.perf_counter()
        await asyncio.gather(*(worker(c, k) for c, k in zip(clients, ids, strict=True)))
        elapsed = time.perf_counter() - began
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return latencies, errors, elapsed


def _clients_process(
    url: str,
    template: dict[str, object],
    texts: Sequence[str],
    ids: Sequence[int],
    stride: int,
    start_at: float,
    seconds: float,
    max_requests: int,
) -> tuple[list[float], int, float]:
    return asyncio.run(_clients(url, template, texts, ids, stride, start_at, seconds, max_requests))


def closed_loop(
    url: str,
    template: dict[str, object],
    texts: Sequence[str],
    clients: int,
    seconds: float,
    max_requests: int,
    procs: int = 1,
) -> tuple[list[float], int, float]:
    """``clients`` closed-loop clients spread over ``procs`` processes: latencies (ms),
    errors, and the elapsed seconds."""
    procs = max(1, min(procs, clients))
    start_at = time.time() + 1.0 + 0.02 * clients  # time for everyone to connect
    groups = [list(range(p, clients, procs)) for p in range(procs)]
    per = max(1, max_requests // procs)
    if procs == 1:
        return _clients_process(url, template, texts, groups[0], clients, start_at, seconds, per)
    latencies: list[float] = []
    errors = 0
    elapsed = 0.0
    with ProcessPoolExecutor(procs) as pool:
        futures = [
            pool.submit(
                _clients_process, url, template, texts, g, clients, start_at + 2.0, seconds, per
            )
            for g in groups
        ]
        for f in futures:
            lat, err, el = f.result()
            latencies += lat
            errors += err
            elapsed = max(elapsed, el)
    return latencies, errors, elapsed


WRK_SCRIPT = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"},
                    bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("ATTNVIZ %%d %%d %%d %%f %%f %%f\\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk_post(url: str, path: str, payloads: Sequence[str], clients: int, seconds: float) -> Result:
    """``clients`` closed-loop connections from wrk (one thread, in C: a load generator
    that leaves the 2 cores to the server), POSTing the JSON ``payloads`` to ``path`` in
    turn. wrk checks the status only and reports percentiles, not every latency."""
    bodies = ",".join(f"[==[{p}]==]" for p in payloads if "]==]" not in p)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % (bodies, path))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout",
             f"{REQUEST_TIMEOUT:g}s", "-s", f.name, f"{url}{path}"],
            capture_output=True, text=True, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("ATTNVIZ "))
    n, status, failed, took, p50, p99 = line.split()[1:]
    errors = int(status) + int(failed)
    result = Result("concurrent clients (wrk)", clients, float(took), [], errors)
    result.counted = int(n) - int(status)
    result.percentiles = {50: float(p50), 99: float(p99)}
    return result


def wrk_loop(
    url: str, template: dict[str, object], texts: Sequence[str], clients: int, seconds: float
) -> Result:
    """Our translate endpoint under wrk, cycling through ``texts``."""
    payloads = [json.dumps(body(t, template)) for t in texts]  # ASCII: non-ASCII is escaped
    return wrk_post(url, "/api/translate", payloads, clients, seconds)


def run_level(
    server: Server,
    texts: Sequence[str],
    clients: int,
    seconds: float,
    cap: int,
    *,
    procs: int,
    wrk: bool,
) -> Result:
    """One concurrency level for ``seconds``: wrk's connections, or closed-loop Python
    clients in ``procs`` processes (at most ``cap`` requests)."""
    if wrk:
        return wrk_loop(server.url, server.template, texts, clients, seconds)
    template = server.template
    lat, err, elapsed = closed_loop(server.url, template, texts, clients, seconds, cap, procs)
    return Result("concurrent clients", clients, elapsed, lat, err)


def sequential(
    url: str, path: str, payload: object, ok: Callable[[httpx.Response], bool], n: int
) -> Result:
    """``n`` requests one after the other (after 20 to warm up): each one's latency."""
    latencies: list[float] = []
    errors = 0
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        for _ in range(min(20, n)):  # warm-up
            with contextlib.suppress(httpx.HTTPError):
                client.post(path, json=payload)
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                r = client.post(path, json=payload)
                answered = r.status_code == 200 and ok(r)
            except httpx.HTTPError:  # a timeout, a dropped connection: an error, go on
                answered = False
            if answered:
                latencies.append((time.perf_counter() - t0) * 1000.0)
            else:
                errors += 1
        elapsed = time.perf_counter() - start
    return Result("single request, 10 words", 1, elapsed, latencies, errors)


def single(server: Server, text: str, n: int) -> Result:
    """Our service: one 10-word sentence, greedy, attention in every answer."""
    payload = body(text, server.template)
    return sequential(
        server.url, "/api/translate", payload, lambda r: r.json()["attention"] is not None, n
    )


def print_table(results: Sequence[Result]) -> None:
    head = f"{'phase':<28} {'batching':>8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} "
    head += f"{'p99 ms':>8} {'requests':>9} {'errors':>6} {'batch':>6}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.name:<28} {r.batch:>8} {r.clients:>7} {r.rps:>8.1f} {r.pct(50):>8.2f} "
            f"{r.pct(99):>8.2f} {r.requests:>9} {r.errors:>6} {r.mean_batch:>6.1f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=ROOT / "checkpoints")
    p.add_argument("--model", default=None, help="model name (default: the server's default)")
    p.add_argument("--seconds", type=float, default=30.0, help="per concurrency level")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--single", type=int, default=300, help="sequential requests for the p50")
    p.add_argument("--max-requests", type=int, default=200_000, help="cap per phase")
    p.add_argument("--soak", type=float, default=0.0, help="minutes at 64 clients (0 = none)")
    p.add_argument(
        "--client-procs", type=int, default=1, help="client processes (the load generator's CPU)"
    )
    p.add_argument("--no-off", action="store_true", help="skip the batching-off runs")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes (ATTNVIZ_PROCESSES)",
    )
    p.add_argument(
        "--shortlist", action="store_true", help="requests use the model's lexical shortlist"
    )
    p.add_argument("--int8", action="store_true", help="requests use the int8 output layer")
    p.add_argument(
        "--wrk",
        action="store_true",
        help="drive the concurrent levels with wrk (Debian's package; a load generator in C)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.wrk and shutil.which("wrk") is None:
        p.error("--wrk needs wrk on the PATH (Debian: apt-get install wrk)")
    if args.seconds <= 0 or args.seconds > 600 or args.soak < 0 or args.soak > 120:
        p.error("--seconds must be in (0, 600] and --soak in [0, 120] minutes")
    ten, pool = sentences()
    results: list[Result] = []

    def settle() -> None:
        """With several processes /metrics adds up the others' counts as they publish
        them, once a second: let them."""
        if args.processes > 1:
            time.sleep(1.5)

    soak: dict[str, float] = {}
    modes = [True] if args.no_off else [True, False]
    for micro in modes:
        env = {"ATTNVIZ_PROCESSES": str(args.processes)}
        server = Server(args.models_dir, micro, args.model, args.shortlist, args.int8, env)
        server.start()
        label = "on" if micro else "off"
        print(f"server on {server.url}, model {server.model}, micro-batching {label}", flush=True)
        try:
            if micro:
                r = single(server, ten, args.single)
                r.batch = label
                results.append(r)
                print_table([r])
            for clients in args.levels:
                level = partial(
                    run_level, server, pool, clients, procs=args.client_procs, wrk=args.wrk
                )
                level(2.0, 10_000)  # warm-up
                settle()
                s0, b0 = batch_totals(server.url)
                r = level(args.seconds, args.max_requests)
                settle()
                s1, b1 = batch_totals(server.url)
                r.batch = label
                r.mean_batch = (s1 - s0) / (b1 - b0) if b1 > b0 else float("nan")
                results.append(r)
                print_table([r])
            if micro and args.soak > 0:
                closed_loop(server.url, server.template, pool, 64, 10.0, 100_000, args.client_procs)
                before = server.rss_mb()
                lat, err, elapsed = closed_loop(
                    server.url,
                    server.template,
                    pool,
                    64,
                    args.soak * 60,
                    10 * args.max_requests,
                    args.client_procs,
                )
                after = server.rss_mb()
                r = Result(f"soak {args.soak:g} min", 64, elapsed, lat, err, label)
                results.append(r)
                soak = {"rss_before_mb": before, "rss_after_mb": after,
                        "growth_pct": 100.0 * (after - before) / before}  # fmt: skip
                print_table([r])
        finally:
            server.stop()
    print()
    print_table(results)
    if soak:
        print(
            f"\nsoak: resident memory {soak['rss_before_mb']:.1f} MB -> "
            f"{soak['rss_after_mb']:.1f} MB ({soak['growth_pct']:+.2f}%), "
            f"errors {results[-1].errors}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [
                        {
                            "phase": r.name,
                            "batching": r.batch,
                            "clients": r.clients,
                            "rps": r.rps,
                            "p50_ms": r.pct(50),
                            "p99_ms": r.pct(99),
                            "requests": r.requests,
                            "errors": r.errors,
                        }
                        for r in results
                    ],
                    "soak": soak,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
