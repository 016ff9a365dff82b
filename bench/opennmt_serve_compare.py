"""Our service against OpenNMT-py 3.5.1's REST server, on loopback, in the same run (not part
of the test run).

    .venv/bin/python bench/opennmt_serve_compare.py [--model en-fr-general] [--seconds 20]
        [--levels 1 8 32 64] [--single 300] [--onmt-threads 0] [--markdown]

Issue 5 sets its service targets against OpenNMT-py's server "measured here": about 11 ms
for one 10-word sentence and about 85 requests/s at 64 clients, with ours to reach 5 ms and
800 requests/s (2.2x and 9.4x). This script measures both servers on this machine, one
after the other, so that the ratios can be read whatever the host's speed of the hour.

It reuses what ``bench/opennmt_compare.py`` makes under ``bench/_work/``: the OpenNMT-py
venv (torch 2.13.0 first, OpenNMT-py with ``--no-deps``) and the OpenNMT-py RNN trained to
match ``--model`` (run that script first; this one says so when the checkpoint is
missing). It adds ``flask`` and ``waitress`` to that venv (what ``onmt_server`` imports),
under the constraint that holds its torch.

1. OpenNMT-py: ``onmt_server`` (Flask on waitress) with a ``conf.json`` serving that
   checkpoint, greedy (``beam_size 1``), CPU, never unloaded. It has no tokenizer
   configured, so it splits the source on spaces: requests carry our tokenizer's tokens,
   space-joined (its server does no tokenizing work; ours does, in the request). Torch
   threads: ``--onmt-threads``, 1 by default, as each of our inference workers has (and
   as ``bench/opennmt_compare.py`` runs it): with torch's default of one per core, while
   two trainings ran, a single request took 0.67 s instead of ~50 ms (presumably its
   OpenMP threads waiting for a core). Its
   answers carry the translation and score; no attention (``onmt_server`` has no option
   that returns it).
   One server run per ``--onmt-waitress-threads`` value: 4 is what ``onmt_server`` ships
   (``waitress.serve(app)`` with waitress's default; ``ServerModel.run`` takes no lock in
   3.5.1, so up to 4 requests translate at once on one model), 1 serves one request at a
   time (what a global lock gives). The script starts ``onmt_server``'s own ``main()``
   with ``waitress.serve`` given that thread count; OpenNMT-py's code is not edited.
2. ours: ``python -m attnviz.app.server`` with the bundled models, micro-batching on,
   requests for ``--model``, greedy, attention, top-5 candidates and alignment in every
   answer (what the service always returns).

For each: the p50/p90 of ``--single`` sequential requests for one 10-word sentence; then,
with wrk (closed loop, one connection per client, a load generator in C), ``--levels``
concurrent clients for ``--seconds`` each over sentences of 8 to 12 words: requests/s,
p50, p99, errors. Printed side by side with the ratios, against the issue's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnviz.model.checkpoint import load_checkpoint  # noqa: E402
from attnviz.model.tokenize import tokenize  # noqa: E402
from attnviz.model.translator import resolve_model_path  # noqa: E402
from bench.opennmt_compare import (  # noqa: E402
    WORK,
    ensure_venv,
    onmt_env,
    onmt_folders,
    run,
)
from bench.report import load_average, render_table  # noqa: E402
from bench.serve_load import (  # noqa: E402
    HOST,
    Result,
    Server,
    free_port,
    sentences,
    sequential,
    single,
    stop_child,
    wait_ready,
    wrk_loop,
    wrk_post,
)

SERVER_DEPS = ["flask==3.1.3", "waitress==3.0.2"]  # what onmt_server imports
ONMT_MODEL_ID = 100
# Issue 5: OpenNMT-py's server "measured here", and the service's targets.
ISSUE = {"single_ms": (11.0, 5.0), "rps_64": (85.0, 800.0)}


def ensure_server_deps(python: Path) -> None:
    """flask and waitress in the OpenNMT-py venv, torch held at its version."""
    check = subprocess.run(
        [str(python), "-c", "import flask, waitress"], capture_output=True, check=False
    )
    if check.returncode == 0:
        return
    venv = python.parent.parent
    print(f"installing {' '.join(SERVER_DEPS)} into {venv} ...", flush=True)
    run([venv / "bin" / "pip", "install", "--quiet", "-c", venv / "constraints.txt", *SERVER_DEPS])


@dataclass
class OnmtServer:
    """``onmt_server`` in a child process, serving one checkpoint greedily on the CPU."""

    python: Path
    checkpoint: Path
    threads: int  # torch threads; 0 = its default
    waitress_threads: int  # onmt_server calls waitress.serve(app) with its default, 4
    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        """Its output: it logs every request, which would fill (and block on) a pipe."""
        return self.folder / "onmt_server.log"

    def start(self, timeout: float = 180.0) -> None:
        conf = {
            "models_root": str(self.checkpoint.parent),
            "models": [
                {
                    "id": ONMT_MODEL_ID,
                    "model": self.checkpoint.name,
                    "timeout": -1,
                    "on_timeout": "to_cpu",
                    "load": True,
                    "opt": {"gpu": -1, "beam_size": 1, "batch_size": 64, "max_length": 250},
                }
            ],
        }
        config = self.folder / "conf.json"
        config.write_text(json.dumps(conf, indent=1))
        env = onmt_env()
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            if self.threads:
                env[key] = str(self.threads)
            else:
                env.pop(key, None)  # torch's default: one thread per core
        self.port = free_port()
        # onmt_server's own main(), with waitress.serve given the thread count
        launch = (
            "import functools, sys, waitress\n"
            f"waitress.serve = functools.partial(waitress.serve, threads={self.waitress_threads})\n"
            "from onmt.bin.server import main\n"
            "sys.argv[0] = 'onmt_server'\n"
            "main()\n"
        )
        self.process = subprocess.Popen(
            [str(self.python), "-c", launch, "--ip", HOST, "--port", str(self.port),
             "--url_root", "/translator", "--model_config", str(config)],
            cwd=self.folder, env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
            start_new_session=True,
        )  # fmt: skip

        def ready() -> bool:
            return httpx.get(f"{self.url}/translator/health", timeout=2.0).status_code == 200

        if not wait_ready(self.process, ready, self.log, timeout):
            self.stop()
            raise SystemExit(f"onmt_server did not answer /translator/health in {timeout:.0f} s")

    def stop(self) -> None:
        stop_child(self.process)


def onmt_payload(tokens: Sequence[str]) -> list[dict[str, object]]:
    return [{"src": " ".join(tokens), "id": ONMT_MODEL_ID}]


def onmt_ok(r: httpx.Response) -> bool:
    """A translation came back (an error is a dict with "error", still status 200)."""
    try:
        body = r.json()
    except ValueError:  # not JSON: an error page
        return False
    return isinstance(body, list) and bool(body and body[0] and body[0][0].get("tgt"))


def onmt_answer(url: str, tokens: Sequence[str]) -> httpx.Response | None:
    """onmt_server's answer to one sentence, or None when none came or it is no
    translation."""
    try:
        r = httpx.post(f"{url}/translator/translate", json=onmt_payload(tokens), timeout=30)
    except httpx.HTTPError:
        return None
    return r if r.status_code == 200 and onmt_ok(r) else None


@dataclass
class Side:
    """One server's figures."""

    name: str
    single: Result
    levels: list[Result]


def measure_onmt(
    server: OnmtServer,
    ten: list[str],
    pool: list[list[str]],
    levels: Sequence[int],
    seconds: float,
    n_single: int,
) -> Side:
    path = "/translator/translate"
    one = sequential(server.url, path, onmt_payload(ten), onmt_ok, n_single)
    print(f"  OpenNMT-py single request: p50 {one.pct(50):.2f} ms", flush=True)
    first = onmt_answer(server.url, ten)
    if first is None:
        raise SystemExit(f"onmt_server does not translate {' '.join(ten)!r}; see {server.log}")
    print(f"  it translates {' '.join(ten)!r} as {first.json()[0][0]['tgt']!r}")
    payloads = [json.dumps(onmt_payload(t)) for t in pool]
    results = []
    for clients in levels:
        wrk_post(server.url, path, payloads, clients, 2.0)  # warm-up
        r = wrk_post(server.url, path, payloads, clients, seconds)
        # wrk checks the status only, and onmt_server answers its errors with a 200: ask
        # once more after the level, to see that it still translates
        if onmt_answer(server.url, ten) is None:
            r.errors += 1
            print(f"  OpenNMT-py no longer translates after {clients} clients")
        print(f"  OpenNMT-py {clients} clients: {_level(r, seconds)} req/s (p50 / p99 ms)")
        results.append(r)
    return Side("OpenNMT-py 3.5.1 onmt_server", one, results)


def measure_ours(
    server: Server, ten: str, pool: list[str], levels: Sequence[int], seconds: float, n: int
) -> Side:
    one = single(server, ten, n)
    print(f"  attnviz single request: p50 {one.pct(50):.2f} ms", flush=True)
    results = []
    for clients in levels:
        wrk_loop(server.url, server.template, pool, clients, 2.0)  # warm-up
        r = wrk_loop(server.url, server.template, pool, clients, seconds)
        print(f"  attnviz {clients} clients: {_level(r, seconds)} req/s (p50 / p99 ms)")
        results.append(r)
    return Side("attnviz", one, results)


def _level(r: Result, seconds: float) -> str:
    if r.requests == 0:
        return f"none answered in {seconds:g} s"
    return f"{r.rps:.0f} ({r.pct(50):.0f} / {r.pct(99):.0f})"


def report(ours: Side, theirs: Sequence[Side], seconds: float, markdown: bool) -> str:
    header = ["", f"{ours.name} (attention)"]
    header += [f"{t.name} (text)" for t in theirs] + [f"ours / {t.name}" for t in theirs]
    rows = [
        ["single request, p50 / p90 ms", f"{ours.single.pct(50):.1f} / {ours.single.pct(90):.1f}"]
        + [f"{t.single.pct(50):.1f} / {t.single.pct(90):.1f}" for t in theirs]
        + [f"{t.single.pct(50) / ours.single.pct(50):.2f}x faster" for t in theirs]
    ]
    for k, a in enumerate(ours.levels):
        others = [t.levels[k] for t in theirs]
        rows.append(
            [f"{a.clients} clients: req/s (p50 / p99 ms)", _level(a, seconds)]
            + [_level(b, seconds) for b in others]
            + [f"{a.rps / b.rps:.2f}x" if b.rps > 0 else "-" for b in others]
        )
    errors = sum(r.errors for side in (ours, *theirs) for r in (side.single, *side.levels))
    return f"{render_table(header, rows, markdown)}\nerrors (failed or non-200 answers): {errors}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="en-fr-general", help="our model (OpenNMT-py's match)")
    p.add_argument("--models-dir", type=Path, default=REPO / "checkpoints")
    p.add_argument("--train-steps", type=int, default=3000, help="the OpenNMT-py model's steps")
    p.add_argument("--onmt-hidden", type=int, help="the OpenNMT-py model's hidden size")
    p.add_argument(
        "--onmt-threads", type=int, default=1, help="its torch threads (0: one per core)"
    )
    p.add_argument(
        "--onmt-waitress-threads",
        type=int,
        nargs="+",
        default=[4, 1],
        help="its request threads, one server run each (4: as shipped; 1: one at a time)",
    )
    p.add_argument(
        "--processes", type=int, default=1, help="our server processes (ATTNVIZ_PROCESSES)"
    )
    p.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--single", type=int, default=300, help="sequential requests for the p50")
    p.add_argument("--work", type=Path, default=WORK, help="bench/opennmt_compare.py's folder")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        p.error("needs wrk on the PATH (Debian: apt-get install wrk)")
    if args.seconds <= 0 or args.seconds > 600:
        p.error("--seconds must be in (0, 600]")

    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs)")
    work: Path = args.work.resolve()
    python = ensure_venv(work / "onmt-venv", install=False)
    ensure_server_deps(python)
    folder = args.models_dir / args.model
    loaded = load_checkpoint(folder if folder.is_dir() else resolve_model_path(args.model), "cpu")
    _, model_dir = onmt_folders(work, loaded, 0, args.train_steps, args.onmt_hidden)
    checkpoint = model_dir / f"model_step_{args.train_steps}.pt"
    if not checkpoint.is_file():
        raise SystemExit(f"no OpenNMT-py model at {checkpoint}: run bench/opennmt_compare.py")
    lang, lc = loaded.source_lang, loaded.lowercase
    ten, pool = sentences()
    ten_tokens = tokenize(ten, lang, lowercase=lc)
    pool_tokens = [tokenize(s, lang, lowercase=lc) for s in pool]
    print(f"OpenNMT-py: {checkpoint}; attnviz: {loaded.path}")
    print(f"10-word sentence: {ten!r} ({len(ten_tokens)} tokens); {len(pool)} of 8-12 words")

    theirs: list[Side] = []
    for waitress_threads in args.onmt_waitress_threads:
        print(f"OpenNMT-py, waitress with {waitress_threads} thread(s):", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            server = OnmtServer(python, checkpoint, args.onmt_threads, waitress_threads, Path(tmp))
            server.start()
            try:
                side = measure_onmt(
                    server, ten_tokens, pool_tokens, args.levels, args.seconds, args.single
                )
            finally:
                server.stop()
        side.name = f"OpenNMT-py, {waitress_threads} thread{'s' if waitress_threads > 1 else ''}"
        theirs.append(side)
    ours_server = Server(
        args.models_dir,
        True,
        loaded.path.name,
        extra_env={"ATTNVIZ_PROCESSES": str(args.processes)},
    )
    ours_server.start()
    try:
        ours = measure_ours(ours_server, ten, pool, args.levels, args.seconds, args.single)
        if args.processes > 1:
            ours.name = f"attnviz, {args.processes} processes"
    finally:
        ours_server.stop()

    print(f"\n== one after the other on loopback, wrk for the levels; load {load_average()} ==")
    print(report(ours, theirs, args.seconds, args.markdown))
    (onmt_single, goal_single), (onmt_rps, goal_rps) = ISSUE["single_ms"], ISSUE["rps_64"]
    print(
        f"the issue: OpenNMT-py {onmt_single:g} ms and {onmt_rps:g} req/s at 64 clients; ours "
        f"<= {goal_single:g} ms ({onmt_single / goal_single:.1f}x faster) and >= {goal_rps:g} "
        f"req/s ({goal_rps / onmt_rps:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
