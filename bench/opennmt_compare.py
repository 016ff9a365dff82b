"""Our RNN decoding against OpenNMT-py 3.5.1, trained alike, in the same run (not part of
the test run).

    .venv/bin/python bench/opennmt_compare.py [--model en-fr-general] [--data data/corpus]
        [--train-steps 3000] [--limit 2000] [--limit-batch1 500] [--int8] [--whole-machine]
        [--profile] [--markdown]

A first run takes about 20 minutes on an idle machine (installing OpenNMT-py 1-2 min,
tokenizing the corpus 1 min, training 10-15 min, timing 2-4 min); later runs only time.

What it does, everything under ``bench/_work/`` (git-ignored; re-runs reuse it):

1. a virtual environment ``bench/_work/onmt-venv`` for OpenNMT-py, made when missing:
   ``python -m venv``, then ``pip install torch==2.13.0`` FIRST (a pip dry run is checked
   beforehand: the script stops if pip would take any other torch or any ``nvidia-*``
   CUDA package), then ``opennmt-py==3.5.1 --no-deps``, because its metadata pins
   ``torch<2.3,>=2.1``, which would replace torch 2.13.0 by a CUDA build of several GB.
   Its runtime dependencies are then installed by hand, under a constraint that holds
   torch at the installed version: configargparse, pyyaml, numpy and pyonmttok (the
   three commands), and regex, fasttext-wheel, spacy, pyahocorasick, rapidfuzz (imported
   by ``onmt.transforms``, which loads every transform module when first imported) and
   sacrebleu (``onmt.scorers``, imported by the trainer). Left out: ctranslate2 (an
   optional import), tensorboard (only with ``-tensorboard``), flask and waitress
   (``onmt_server``). The venv's torch is checked to be 2.13.0 after the install and at
   every run; the script fails otherwise.

   OpenNMT-py 3.5.1 runs on torch 2.13 unpatched but for one thing: its checkpoints
   pickle an ``argparse.Namespace`` and the vocabularies, and torch >= 2.6 loads
   ``weights_only`` by default, so ``onmt_translate`` fails with "Weights only load
   failed". Every OpenNMT-py command is therefore run with the environment variable
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch's own switch back to full unpickling;
   the checkpoint is the one this script just trained). Their code is not edited.

2. data: the corpus's English and French sides tokenized with our tokenizer
   (``attnviz.model.tokenize.tokenize``, Moses-based) and written space-joined, so both
   systems see the same tokens; vocabularies by ``onmt_build_vocab`` (every word).

3. an OpenNMT-py RNN of our model's size, trained by ``onmt_train`` (skipped when the
   model file exists; ``--retrain`` forces it): word embeddings as ours (128 for
   en-fr-general; sizes are read from the model's config),
   bidirectional GRU encoder (``-encoder_type brnn``), GRU decoder with input feeding,
   ``-global_attention general``, batch 64 sentences, Adam lr 0.002, dropout 0.1, label
   smoothing 0.1, gradient norm 1, one thread, ``--train-steps`` steps. OpenNMT-py
   needs the encoder's and decoder's hidden sizes equal and splits a brnn's between
   the two directions, so it cannot have ours (256 a direction, 256 in the decoder):
   its hidden size defaults to our decoder's, 256, which matches our decoder and output
   layer, where the decoding time goes, with 128 a direction in the encoder (2.94 M
   parameters against our 3.82 M); ``--onmt-hidden 512`` would match our encoder and
   double the decoder (about 6.4 M). Both parameter counts are printed. The default of
   3000 steps (about one epoch, as many as our model had) takes 10-15 minutes.

4. timing, one thread each, on the first ``--limit`` test sentences (``--limit-batch1``
   for batch 1), batch sizes 1 and 64, beams 1 (greedy) and 5. ``--whole-machine`` lets
   each engine use the machine as it does by default instead: ours decodes as ``attnviz
   translate`` does (:func:`attnviz.model.translator.default_workers` batches at a time,
   in threads of one torch thread sharing the model: 2 on 2 cores), OpenNMT-py runs
   without ``OMP_NUM_THREADS`` (torch's default, a thread per core; ``onmt_translate``
   has no way to translate several batches at a time on a CPU). Engine for engine or
   machine for machine: the two answer different questions, and neither is the issue's
   by its text, which fixes batch sizes and beams but not threads.

   - ours: ``--model`` loaded in this process (``torch.set_num_threads(1)``), then token
     lists -> ids -> length-sorted batches -> ``decode_batch`` (attention captured, as
     always) -> target tokens. Model loading and tokenization are outside the timer;
     three batches are decoded first to warm up.
   - OpenNMT-py: ``onmt_translate -gpu -1 -batch_type sents -report_time`` on the same
     tokenized file, as a subprocess with ``OMP_NUM_THREADS=1``. It sorts the file by
     length itself. Three figures: *raw* = sentences / wall time of the whole command
     (Python start-up, imports, model load included); *net* = sentences / (that wall
     time minus the start-up: the median wall time of ``--startup-runs`` runs of the
     command, greedy, on one sentence); *in-loop* =
     sentences / OpenNMT-py's own "Total translation time" (its timer around reading,
     batching, decoding and writing; nothing of start-up or model load), taken as
     predicted tokens / its "Tokens per second" for the precision. The ratios use the
     in-loop figure (the most favourable to OpenNMT-py) and the net one.

     Greedy is ``-beam_size 1``, which OpenNMT-py 3.5.1 runs as its ``BeamSearch`` with
     one beam (what a user of ``onmt_translate`` gets); ``--onmt-greedy-search`` adds
     ``-random_sampling_topk 1`` instead, which takes its ``GreedySearch`` class (argmax,
     deterministic).

     OpenNMT-py keeps no attention here, ours does: OpenNMT-py 3.5.1 cannot return an
     RNN decoder's attention for a batch of more than one sentence (``-replace_unk`` or
     ``-attn_debug`` fail with ``IndexError`` in ``BeamSearch.advance`` and
     ``GreedySearch.update_finished``: its RNN decoder stacks attention as (1, batch,
     source), its searches expect (batch, 1, source); a bug of theirs, not of
     torch 2.13).

   ``--profile`` then runs each engine's batch-64 greedy translation of the test sentences
   once more under ``torch.profiler`` (OpenNMT-py's ``onmt_translate`` entry point called
   in its venv's Python, ours in this process) and prints the time in matrix products
   (the profiler's self time of addmm, mm, bmm, baddbmm and the int8 linear): OpenNMT-py's
   loop time over our product time is the ratio we could reach at batch 64 if everything
   but our products took no time at all.

   Printed: a table of sentences/s per batch x beam for both systems, the ratios, BLEU
   (sacrebleu, detokenized by our detokenizer, against the references) and target
   tokens per sentence of each, so output lengths and quality are visible; the goals of
   the issue (greedy: >= 3x at batch 1, >= 2x at batch 64) with met / not met; the
   load average before and after (other processes share the 2 cores). ``--markdown``
   prints the table in Markdown.

The two beam searches are not the same search: OpenNMT-py 3.5.1 ends a sentence as soon
as its best live hypothesis ends ("early stop when top beam is finished") and ranks by
raw log-probability (``-length_penalty none``); ours (fairseq's rule) goes on until 5
hypotheses have finished and ranks by score / length, so it runs more steps. The maxima
differ too (ours: 2 x source + 10 tokens, OpenNMT-py: 250), which matters only for a
sentence that does not end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import sacrebleu
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnviz.model.checkpoint import LoadedModel, load_checkpoint  # noqa: E402
from attnviz.model.decoding import DecodeOptions, decode_batch  # noqa: E402
from attnviz.model.tokenize import detokenize, tokenize  # noqa: E402
from attnviz.model.translator import default_workers, resolve_model_path  # noqa: E402
from bench.report import load_average, render_table  # noqa: E402

WORK = REPO / "bench" / "_work"
ONMT_VERSION = "3.5.1"
TORCH_VERSION = "2.13.0"
# What onmt_build_vocab / onmt_train / onmt_translate import (see the module docstring).
ONMT_RUNTIME_DEPS = [
    "configargparse",
    "pyyaml",
    "numpy",
    "pyonmttok>=1.37,<2",
    "regex",
    "fasttext-wheel",
    "spacy",
    "pyahocorasick",
    "rapidfuzz",
    "sacrebleu",
]
# The issue's figures for OpenNMT-py on this kind of machine (greedy, sentences/s).
ISSUE_ONMT = {1: 160.0, 64: 1400.0}
GOALS = {1: 3.0, 64: 2.0}  # ours / theirs, greedy


def run(
    cmd: Sequence[str | Path], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, echoing it; stop with its output's tail when it fails."""
    print("  $ " + " ".join(str(c) for c in cmd), flush=True)
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, env=env
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(f"command failed ({proc.returncode}): {cmd[0]} ...\n{tail}")
    return proc


def onmt_env(one_thread: bool = True) -> dict[str, str]:
    """The environment of every OpenNMT-py command: no GPU, full unpickling, and one thread
    (``one_thread``) or torch's default (a thread per core: ``--whole-machine``)."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if one_thread:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(
        CUDA_VISIBLE_DEVICES="",
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
        PYTHONWARNINGS="ignore",
    )
    return env


# -- the OpenNMT-py virtual environment ------------------------------------------------------


def venv_versions(python: Path) -> tuple[str, str]:
    """(torch version, OpenNMT-py version) installed in the venv of ``python``; "" if none."""
    code = (
        "import importlib.metadata as m\n"
        "for name in ('torch', 'OpenNMT-py'):\n"
        "    try:\n"
        "        print(m.version(name))\n"
        "    except m.PackageNotFoundError:\n"
        "        print('-')\n"
    )
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    lines = [x if x != "-" else "" for x in proc.stdout.split()]
    return (lines[0], lines[1]) if proc.returncode == 0 and len(lines) == 2 else ("", "")


def check_torch_dry_run(pip: Path, report: Path) -> None:
    """What ``pip install torch==2.13.0`` would do; stop unless it is a CPU torch 2.13.0."""
    run([pip, "install", "--quiet", "--dry-run", "--report", report, f"torch=={TORCH_VERSION}"])
    installs = json.loads(report.read_text())["install"]
    torch_item = None
    for item in installs:
        name = item["metadata"]["name"].lower()
        if name.startswith("nvidia-") or name == "triton":
            raise SystemExit(
                f"pip would install {name} with torch=={TORCH_VERSION}: a CUDA build of "
                "several GB; refusing. Put the CPU wheel where pip finds it first."
            )
        if name == "torch":
            torch_item = item
    if torch_item is None:
        raise SystemExit("pip's dry run installs no torch")
    version = str(torch_item["metadata"]["version"])
    if version.split("+")[0] != TORCH_VERSION:
        raise SystemExit(f"pip would install torch {version}, not {TORCH_VERSION}; refusing")
    url = torch_item.get("download_info", {}).get("url", "?")
    print(f"  pip would take torch {version} from {url}")


def ensure_venv(venv: Path, install: bool) -> Path:
    """The venv's python, installing torch 2.13.0 then OpenNMT-py 3.5.1 when needed."""
    python = venv / "bin" / "python"
    marker = venv / "attnviz-install.json"
    if marker.is_file() and python.is_file():
        torch_v, onmt_v = venv_versions(python)
    else:
        if not install:
            raise SystemExit(f"no OpenNMT-py venv at {venv} (and --no-install was given)")
        started = time.perf_counter()
        print(f"installing OpenNMT-py {ONMT_VERSION} into {venv} ...", flush=True)
        if not python.is_file():
            run([sys.executable, "-m", "venv", venv])
        pip = venv / "bin" / "pip"
        version = venv_versions(python)[0]
        if version and version.split("+")[0] != TORCH_VERSION:
            raise SystemExit(f"{venv} has torch {version}: delete the folder to reinstall")
        if not version:  # torch first, alone, after checking what pip would take
            check_torch_dry_run(pip, venv / "torch-dry-run.json")
            run([pip, "install", "--quiet", f"torch=={TORCH_VERSION}"])
            version = venv_versions(python)[0]
            if version.split("+")[0] != TORCH_VERSION:
                raise SystemExit(f"pip installed torch {version or '?'} into {venv}")
        constraints = venv / "constraints.txt"
        constraints.write_text(f"torch=={version}\n")
        run([pip, "install", "--quiet", "--no-deps", f"opennmt-py=={ONMT_VERSION}"])
        requires = run(
            [
                python,
                "-c",
                "import importlib.metadata as m; "
                "print(*[r for r in m.requires('OpenNMT-py') or [] if r.startswith('torch')])",
            ]
        ).stdout.strip()
        print(
            f"  OpenNMT-py {ONMT_VERSION} requires {requires or 'torch (no pin)'}; installed "
            f"with --no-deps so that torch stays {version}, its runtime imports by hand:"
        )
        run([pip, "install", "--quiet", "-c", constraints, *ONMT_RUNTIME_DEPS])
        torch_v, onmt_v = venv_versions(python)
        if torch_v.split("+")[0] == TORCH_VERSION and onmt_v == ONMT_VERSION:
            marker.write_text(
                json.dumps({"torch": torch_v, "opennmt-py": onmt_v, "deps": ONMT_RUNTIME_DEPS})
            )
        print(f"  installed in {time.perf_counter() - started:.0f} s")
    if torch_v.split("+")[0] != TORCH_VERSION or onmt_v != ONMT_VERSION:
        raise SystemExit(
            f"{venv} has torch {torch_v or '?'} and OpenNMT-py {onmt_v or '?'}, not torch "
            f"{TORCH_VERSION} and OpenNMT-py {ONMT_VERSION}: delete the folder to reinstall"
        )
    print(f"OpenNMT-py {onmt_v} with torch {torch_v} in {venv}")
    return python


# -- data and training -----------------------------------------------------------------------


def read_tsv(path: Path, limit: int = 0) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 2 and cols[0].strip():
                pairs.append((cols[0], cols[1]))
                if limit and len(pairs) >= limit:
                    break
    return pairs


def data_yaml(folder: Path) -> str:
    """The vocabularies and training corpus of ``folder``, as OpenNMT-py's YAML."""
    return (
        f"src_vocab: {folder / 'vocab.src'}\n"
        f"tgt_vocab: {folder / 'vocab.tgt'}\n"
        "data:\n"
        "  corpus_1:\n"
        f"    path_src: {folder / 'train.src'}\n"
        f"    path_tgt: {folder / 'train.tgt'}\n"
        "    weight: 1\n"
    )


def prepare_data(
    bin_dir: Path, data: Path, folder: Path, pairs_limit: int, langs: tuple[str, str], lc: bool
) -> None:
    """Tokenized train files and OpenNMT-py vocabularies in ``folder`` (once)."""
    done = folder / "done"
    if done.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pairs = read_tsv(data / "train.tsv", pairs_limit)
    src, tgt = langs
    with (
        (folder / "train.src").open("w", encoding="utf-8") as fs,
        (folder / "train.tgt").open("w", encoding="utf-8") as ft,
    ):
        for s, t in pairs:
            fs.write(" ".join(tokenize(s, src, lowercase=lc)) + "\n")
            ft.write(" ".join(tokenize(t, tgt, lowercase=lc)) + "\n")
    print(f"tokenized {len(pairs)} training pairs in {time.perf_counter() - started:.0f} s")
    config = folder / "vocab.yaml"
    config.write_text(f"save_data: {folder / 'samples'}\noverwrite: true\n" + data_yaml(folder))
    run(
        [bin_dir / "onmt_build_vocab", "-config", config, "-n_sample", "-1", "-num_threads", "1"],
        env=onmt_env(),
    )
    done.write_text(str(len(pairs)) + "\n")


def onmt_folders(
    work: Path, loaded: LoadedModel, train_pairs: int, steps: int, hidden: int | None
) -> tuple[Path, Path]:
    """(data folder, model folder) of the OpenNMT-py model trained to match ``loaded``:
    its tokenized data, and the checkpoint of ``steps`` steps with hidden size ``hidden``
    (None: our model's)."""
    cfg = loaded.model.config
    pairs_tag = train_pairs or "all"
    lc = "-lc" if loaded.lowercase else ""
    data_dir = work / "onmt" / f"data-{loaded.source_lang}-{loaded.target_lang}-{pairs_tag}{lc}"
    model_dir = data_dir / f"model-e{cfg.emb_dim}-h{hidden or cfg.hidden_dim}-steps{steps}"
    return data_dir, model_dir


def train(
    bin_dir: Path, data_dir: Path, model_dir: Path, steps: int, emb: int, hidden: int
) -> Path:
    """Train the OpenNMT-py model unless it exists; the checkpoint's path."""
    checkpoint = model_dir / f"model_step_{steps}.pt"
    if checkpoint.is_file():
        print(f"OpenNMT-py model exists, not retrained: {checkpoint}")
        return checkpoint
    model_dir.mkdir(parents=True, exist_ok=True)
    config = model_dir / "train.yaml"
    config.write_text(
        data_yaml(data_dir) + f"save_model: {model_dir / 'model'}\n"
        "model_task: seq2seq\n"
        "encoder_type: brnn\n"
        "decoder_type: rnn\n"
        "rnn_type: GRU\n"
        "layers: 1\n"
        f"word_vec_size: {emb}\n"
        f"hidden_size: {hidden}\n"
        "global_attention: general\n"
        "input_feed: 1\n"
        "batch_size: 64\n"
        "batch_type: sents\n"
        f"train_steps: {steps}\n"
        f"save_checkpoint_steps: {steps}\n"
        "keep_checkpoint: 1\n"
        "report_every: 100\n"
        "optim: adam\n"
        "learning_rate: 0.002\n"
        "max_grad_norm: 1.0\n"
        "dropout: [0.1]\n"
        "label_smoothing: 0.1\n"
        "num_workers: 0\n"
        "seed: 1\n"
        "world_size: 1\n"
    )
    log = model_dir / "train.log"
    cmd = [str(bin_dir / "onmt_train"), "-config", str(config)]
    print(f"training OpenNMT-py for {steps} steps (log: {log})\n  $ {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=onmt_env()
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if " Step " in line or "number of parameters" in line:
                print("  " + line.rstrip().split(" INFO] ")[-1], flush=True)
        code = proc.wait()
    if code != 0 or not checkpoint.is_file():
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-20:])
        raise SystemExit(f"onmt_train failed ({code}), see {log}:\n{tail}")
    took = time.perf_counter() - started
    (model_dir / "train_seconds").write_text(f"{took:.1f}\n")
    print(f"trained in {took:.0f} s")
    return checkpoint


def onmt_parameters(model_dir: Path) -> str:
    """'N (encoder E, decoder D)' from the training log."""
    log = model_dir / "train.log"
    text = log.read_text(encoding="utf-8") if log.is_file() else ""
    found = {
        key: m.group(1)
        for key in ("encoder", "decoder", "number of parameters")
        if (m := re.search(rf"{key}: (\d+)", text))
    }
    if "number of parameters" not in found:
        return "? (no training log)"
    total = int(found["number of parameters"])
    parts = ", ".join(f"{k} {int(found[k]):,}" for k in ("encoder", "decoder") if k in found)
    return f"{total:,} ({parts})"


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnmtRun:
    command: str
    argv: tuple[str, ...]  # the command: onmt_translate and its arguments
    out: Path  # where it wrote its translations
    wall: float  # seconds, the whole command
    loop: float  # seconds, OpenNMT-py's "Total translation time"
    outputs: list[list[str]]


def onmt_translate(
    bin_dir: Path,
    checkpoint: Path,
    src: Path,
    out: Path,
    batch_size: int,
    beam: int,
    extra: Sequence[str] = (),
    one_thread: bool = True,
) -> OnmtRun:
    cmd = [
        str(bin_dir / "onmt_translate"),
        "-model",
        str(checkpoint),
        "-src",
        str(src),
        "-output",
        str(out),
        "-gpu",
        "-1",
        "-batch_size",
        str(batch_size),
        "-batch_type",
        "sents",
        "-beam_size",
        str(beam),
        "-report_time",
        *extra,
    ]
    return onmt_run(cmd, out, one_thread)


def onmt_run(cmd: Sequence[str], out: Path, one_thread: bool = True) -> OnmtRun:
    """Run an ``onmt_translate`` command that writes to ``out`` and read its timings."""
    started = time.perf_counter()
    env = onmt_env(one_thread)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - started
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-20:])
        raise SystemExit(f"onmt_translate failed ({proc.returncode}):\n{' '.join(cmd)}\n{tail}")
    outputs = [line.split() for line in out.read_text(encoding="utf-8").splitlines()]
    words = sum(len(o) for o in outputs)
    tps = re.search(r"Tokens per second: ([\d.]+)", text)
    total = re.search(r"Total translation time \(s\): ([\d.]+)", text)
    if tps and float(tps.group(1)) > 0 and words:
        loop = words / float(tps.group(1))
    elif total:
        loop = float(total.group(1))
    else:
        raise SystemExit(f"no -report_time figures in the output of {' '.join(cmd)}")
    return OnmtRun(" ".join(cmd), tuple(cmd), out, wall, loop, outputs)


@dataclass(frozen=True)
class OursRun:
    seconds: float
    outputs: list[list[str]]
    attention: bool


def ours_translate(
    loaded: LoadedModel,
    sources: list[list[str]],
    batch: int,
    beam: int,
    int8: bool = False,
    workers: int = 1,
) -> OursRun:
    """Decode ``sources`` in length-sorted batches, ``workers`` batches at a time in
    as many threads sharing the model, as ``attnviz translate`` does."""
    model = loaded.model
    opts = DecodeOptions(beam_size=beam)
    src_vocab, tgt_vocab = loaded.src_vocab, loaded.tgt_vocab

    def go(sentences: list[list[str]], pool: ThreadPoolExecutor) -> tuple[list[list[str]], bool]:
        ids = [src_vocab.encode(tokens, add_eos=True) for tokens in sentences]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches = [order[start : start + batch] for start in range(0, len(order), batch)]
        outputs: list[list[str]] = [[] for _ in ids]
        attention = True
        run = partial(decode_batch, model, options=opts, int8=int8)
        for idx, results in zip(
            batches, pool.map(run, [[ids[i] for i in idx] for idx in batches]), strict=True
        ):
            for i, result in zip(idx, results, strict=True):
                outputs[i] = tgt_vocab.decode(result.best.token_ids)
                attention = attention and result.best.attention is not None
        return outputs, attention

    with ThreadPoolExecutor(workers, thread_name_prefix="ours") as pool:
        go(sources[: 3 * batch * workers], pool)  # warm up
        started = time.perf_counter()
        outputs, attention = go(sources, pool)
        return OursRun(time.perf_counter() - started, outputs, attention)


# what torch.profiler names the matrix products (nn.GRU's on the CPU are addmm/mm)
PRODUCTS = (
    "aten::addmm",
    "aten::mm",
    "aten::bmm",
    "aten::baddbmm",
    "quantized::linear_dynamic",
)

# run by the OpenNMT-py venv's Python: onmt_translate's own entry point under the profiler
ONMT_PROFILE = """
import json, sys
import torch
from torch.profiler import ProfilerActivity, profile
from onmt.bin.translate import main
products = set(json.loads(sys.argv[1]))
sys.argv = ["onmt_translate", *sys.argv[2:]]
with profile(activities=[ProfilerActivity.CPU]) as prof:
    main()
events = prof.key_averages()
print("PROFILE " + json.dumps({
    "products": sum(e.self_cpu_time_total for e in events if e.key in products) / 1e6,
    "ops": sum(e.self_cpu_time_total for e in events) / 1e6,
}))
"""


def profile_products(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds in matrix products, seconds in all operators) of ``work()`` under the
    profiler (self times: an operator's own time, not its callees')."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        work()
    events = prof.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCTS)
    return products / 1e6, sum(e.self_cpu_time_total for e in events) / 1e6


def profile_onmt(python: Path, translate: OnmtRun, folder: Path) -> tuple[float, float]:
    """``profile_products`` of OpenNMT-py's run of ``translate.argv``, in its venv, one
    thread (the script is written to ``folder``)."""
    script = folder / "profile_translate.py"
    script.write_text(ONMT_PROFILE, encoding="utf-8")
    proc = run([python, script, json.dumps(PRODUCTS), *translate.argv[1:]], onmt_env())
    lines = [x for x in proc.stdout.splitlines() if x.startswith("PROFILE ")]
    if not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise SystemExit(f"the OpenNMT-py profile printed no PROFILE line:\n{tail}")
    found = json.loads(lines[-1].removeprefix("PROFILE "))
    return float(found["products"]), float(found["ops"])


def profile_ours(
    loaded: LoadedModel, sources: list[list[str]], batch: int, int8: bool
) -> tuple[float, float]:
    """``profile_products`` of our greedy decoding of ``sources``, ``batch`` at a time, in
    this thread (the profiler sees no other)."""
    ids = sorted((loaded.src_vocab.encode(t, add_eos=True) for t in sources), key=len)
    batches = [ids[start : start + batch] for start in range(0, len(ids), batch)]
    go = partial(decode_batch, loaded.model, options=DecodeOptions(), int8=int8)
    return profile_products(lambda: [go(b) for b in batches])


@dataclass(frozen=True)
class Row:
    batch: int
    beam: int
    sentences: int
    ours: float  # sentences/s
    loop: float
    net: float
    raw: float
    bleu_ours: float
    bleu_onmt: float
    len_ours: float  # target tokens per sentence
    len_onmt: float
    attention: bool
    int8: float | None = None  # ours with the int8 output layer, sentences/s
    bleu_int8: float | None = None

    @property
    def name(self) -> str:
        return f"batch {self.batch}, {'greedy' if self.beam == 1 else f'beam {self.beam}'}"


def bleu(outputs: list[list[str]], refs: list[str], lang: str) -> float:
    hyps = [detokenize(o, lang) for o in outputs]
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def table(rows: list[Row], markdown: bool) -> str:
    header = [
        "",
        "sentences",
        "attnviz",
        "OpenNMT-py in-loop",
        "OpenNMT-py net",
        "OpenNMT-py raw",
        "ours/theirs in-loop",
        "ours/theirs net",
        "BLEU ours/theirs",
        "tokens/sent ours/theirs",
    ]
    int8 = any(r.int8 is not None for r in rows)
    if int8:
        header[3:3] = ["attnviz int8"]
        header[8:8] = ["int8/theirs in-loop"]
        header[-1:-1] = ["BLEU int8"]
    body = [
        [
            r.name,
            str(r.sentences),
            f"{r.ours:.0f}",
            f"{r.loop:.0f}",
            f"{r.net:.0f}" if r.net > 0 else "-",
            f"{r.raw:.0f}",
            f"{r.ours / r.loop:.2f}x",
            f"{r.ours / r.net:.2f}x" if r.net > 0 else "-",
            f"{r.bleu_ours:.1f} / {r.bleu_onmt:.1f}",
            f"{r.len_ours:.1f} / {r.len_onmt:.1f}",
        ]
        for r in rows
    ]
    if int8:
        for r, line in zip(rows, body, strict=True):
            line[3:3] = [f"{r.int8:.0f}" if r.int8 else "-"]
            line[8:8] = [f"{r.int8 / r.loop:.2f}x" if r.int8 else "-"]
            line[-1:-1] = [f"{r.bleu_int8:.1f}" if r.bleu_int8 is not None else "-"]
    return render_table(header, body, markdown)


def print_profile(
    runs: dict[tuple[int, int], tuple[list[list[str]], OursRun, OursRun | None, OnmtRun]],
    python: Path,
    loaded: LoadedModel,
    folder: Path,
) -> None:
    """``--profile``: both engines' batch-64 greedy runs again, under the profiler, one
    thread each. OpenNMT-py's run is timed once more unprofiled, and the faster of its two
    loops is the one the bound is taken against (the bound favours it)."""
    sources, ours, int8, theirs = runs[64, 1]
    print(f"\n== profile: batch 64, greedy, {len(sources)} sentences (torch.profiler) ==")
    products, ops = profile_onmt(python, theirs, folder)
    second = onmt_run(theirs.argv, theirs.out)
    loop = min(theirs.loop, second.loop)
    print(
        f"OpenNMT-py: its loop {theirs.loop:.2f} and {second.loop:.2f} s unprofiled (bound "
        f"against {loop:.2f} s); profiled, {products:.2f} s in matrix products of "
        f"{ops:.2f} s in operators ({products / ops:.0%})"
    )
    for name, done, quantised in (("ours", ours, False), ("ours, int8", int8, True)):
        if done is None:
            continue
        products, ops = profile_ours(loaded, sources, 64, quantised)
        print(
            f"{name}: {done.seconds:.2f} s unprofiled; profiled, {products:.2f} s in matrix "
            f"products of {ops:.2f} s in operators ({products / ops:.0%}): with nothing else "
            f"taking any time, at most {loop / products:.2f}x OpenNMT-py's loop"
        )


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="en-fr-general", help="our model folder or name")
    parser.add_argument(
        "--data", type=Path, default=REPO / "data" / "corpus", help="corpus folder (TSV)"
    )
    parser.add_argument(
        "--train-steps", type=int, default=3000, help="OpenNMT-py training steps (batch 64)"
    )
    parser.add_argument(
        "--train-pairs", type=int, default=0, help="training pairs used (0 = all; for tests)"
    )
    parser.add_argument(
        "--onmt-hidden",
        type=int,
        help="OpenNMT-py hidden_size: its decoder's size and twice an encoder direction's "
        "(default: our model's hidden size, the size of our decoder)",
    )
    parser.add_argument("--retrain", action="store_true", help="train OpenNMT-py again")
    parser.add_argument("--limit", type=int, default=2000, help="test sentences (batch > 1)")
    parser.add_argument("--limit-batch1", type=int, default=500, help="test sentences, batch 1")
    parser.add_argument("--batch-sizes", default="1,64", help="batch sizes")
    parser.add_argument("--beams", default="1,5", help="beam sizes (1 = greedy)")
    parser.add_argument(
        "--onmt-greedy-search",
        action="store_true",
        help="greedy runs of onmt_translate with -random_sampling_topk 1 (its GreedySearch)",
    )
    parser.add_argument(
        "--startup-runs", type=int, default=3, help="one-sentence runs timing start-up"
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also time ours with the int8 output layer (attnviz.model.int8), in the same run",
    )
    parser.add_argument(
        "--whole-machine",
        action="store_true",
        help="each engine as it runs by default on this machine instead of one thread each: "
        "ours with attnviz translate's workers (a one-thread worker per core), OpenNMT-py "
        "with torch's default threads (one per core)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then profile both engines' batch-64 greedy runs: time in matrix products",
    )
    parser.add_argument("--work", type=Path, default=WORK, help="working folder")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-install", action="store_true", help="do not create the venv")
    args = parser.parse_args()
    if args.profile and args.whole_machine:
        parser.error("--profile compares one thread each: leave out --whole-machine")
    if args.profile and (64 not in ints(args.batch_sizes) or 1 not in ints(args.beams)):
        parser.error("--profile profiles batch 64, greedy: keep 64 in --batch-sizes, 1 in --beams")

    torch.set_num_threads(1)
    workers = default_workers(torch.device("cpu")) if args.whole_machine else 1
    one_thread = not args.whole_machine
    threads = (
        f"the whole machine: ours {workers} worker thread(s) of one torch thread (as attnviz "
        "translate runs), OpenNMT-py torch's default threads (one per core)"
        if args.whole_machine
        else "one thread each"
    )
    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs)")
    work: Path = args.work.resolve()
    python = ensure_venv(work / "onmt-venv", not args.no_install)
    bin_dir = python.parent

    loaded = load_checkpoint(resolve_model_path(args.model), "cpu")
    cfg = loaded.model.config
    src_lang, tgt_lang, lc = loaded.source_lang, loaded.target_lang, loaded.lowercase
    print(
        f"ours: {loaded.path} ({getattr(cfg, 'attention', '?')} attention, "
        f"{getattr(cfg, 'decoder_style', '?')} decoder, emb {cfg.emb_dim}, hidden "
        f"{cfg.hidden_dim} a direction and in the decoder, vocab {cfg.src_vocab_size}/"
        f"{cfg.tgt_vocab_size}, {loaded.model.num_parameters():,} parameters)"
    )

    onmt_dir = work / "onmt"
    data_dir, model_dir = onmt_folders(
        work, loaded, args.train_pairs, args.train_steps, args.onmt_hidden
    )
    prepare_data(bin_dir, args.data, data_dir, args.train_pairs, (src_lang, tgt_lang), lc)
    emb, hidden = cfg.emb_dim, args.onmt_hidden or cfg.hidden_dim
    if args.retrain and model_dir.is_dir():
        shutil.rmtree(model_dir)
    checkpoint = train(bin_dir, data_dir, model_dir, args.train_steps, emb, hidden)
    seconds = model_dir / "train_seconds"
    took = f", trained in {float(seconds.read_text()):.0f} s" if seconds.is_file() else ""
    print(
        f"OpenNMT-py: {checkpoint} (brnn GRU encoder {hidden // 2} a direction, GRU "
        f"decoder {hidden} with input feeding, general attention, emb {emb}, "
        f"{args.train_steps} steps of 64 sentences on {data_dir.name}{took}; "
        f"{onmt_parameters(model_dir)} parameters)"
    )

    test_pairs = read_tsv(args.data / "test.tsv", max(args.limit, args.limit_batch1))
    test_tokens = [tokenize(s, src_lang, lowercase=lc) for s, _ in test_pairs]
    refs = [t for _, t in test_pairs]
    run_dir = onmt_dir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"test: {args.data / 'test.tsv'} ({len(test_pairs)} sentences read, "
        f"{statistics.mean(len(t) for t in test_tokens):.1f} source tokens on average); "
        f"{threads}; OpenNMT-py greedy: "
        + ("GreedySearch" if args.onmt_greedy_search else "BeamSearch with one beam")
    )
    greedy_extra = ["-random_sampling_topk", "1"] if args.onmt_greedy_search else []

    one_file = run_dir / "test-1.src"
    one_file.write_text(" ".join(test_tokens[0]) + "\n")
    walls = sorted(
        onmt_translate(
            bin_dir, checkpoint, one_file, run_dir / "pred-1.txt", 1, 1, (), one_thread
        ).wall
        for _ in range(max(1, args.startup_runs))
    )
    startup = statistics.median(walls)
    print(
        f"OpenNMT-py start-up (onmt_translate on one sentence: interpreter, imports, model "
        f"load, one greedy translation): median {startup:.2f} s of {len(walls)} runs "
        f"({walls[0]:.2f}..{walls[-1]:.2f} s)"
    )

    rows: list[Row] = []
    # per (batch, beam): the sentences, our run, our int8 run, OpenNMT-py's run
    runs: dict[tuple[int, int], tuple[list[list[str]], OursRun, OursRun | None, OnmtRun]] = {}
    for batch in ints(args.batch_sizes):
        n = min(args.limit_batch1 if batch == 1 else args.limit, len(test_pairs))
        src_file = run_dir / f"test-{n}.src"
        src_file.write_text("".join(" ".join(t) + "\n" for t in test_tokens[:n]))
        for beam in ints(args.beams):
            name = f"batch {batch}, beam {beam}"
            print(f"timing {name} on {n} sentences ...", flush=True)
            sources = test_tokens[:n]
            ours = ours_translate(loaded, sources, batch, beam, False, workers)
            int8 = None
            if args.int8:
                int8 = ours_translate(loaded, sources, batch, beam, True, workers)
            out = run_dir / f"pred-b{batch}-k{beam}.txt"
            extra = greedy_extra if beam == 1 else []  # see the module docstring
            full = onmt_translate(
                bin_dir, checkpoint, src_file, out, batch, beam, extra, one_thread
            )
            net = full.wall - startup
            runs[batch, beam] = (sources, ours, int8, full)
            print(f"  $ {full.command}")
            rows.append(
                Row(
                    batch=batch,
                    beam=beam,
                    sentences=n,
                    ours=n / ours.seconds,
                    loop=n / full.loop,
                    net=n / net if net > 0 else 0.0,
                    raw=n / full.wall,
                    bleu_ours=bleu(ours.outputs, refs[:n], tgt_lang),
                    bleu_onmt=bleu(full.outputs, refs[:n], tgt_lang),
                    len_ours=statistics.mean(len(o) for o in ours.outputs),
                    len_onmt=statistics.mean(len(o) for o in full.outputs),
                    attention=ours.attention,
                    int8=None if int8 is None else n / int8.seconds,
                    bleu_int8=None if int8 is None else bleu(int8.outputs, refs[:n], tgt_lang),
                )
            )
            print(
                f"  ours {ours.seconds:.2f} s; OpenNMT-py {full.wall:.2f} s wall, "
                f"{full.loop:.2f} s in its loop",
                flush=True,
            )

    print(
        f"\n== sentences/s, {threads} (ours: decoding in process, attention captured: "
        f"{all(r.attention for r in rows)}; OpenNMT-py: no attention kept) =="
    )
    print(table(rows, args.markdown))
    print(
        "in-loop: OpenNMT-py's own translation timer; net: its wall time minus the "
        f"start-up ({startup:.2f} s); raw: its wall time (start-up and model load included)"
    )
    for batch, goal in GOALS.items():
        row = next((r for r in rows if r.batch == batch and r.beam == 1), None)
        if row is None:
            continue
        ratio = row.ours / row.loop
        verdict = "met" if ratio >= goal else "NOT met"
        net_ratio = f"{row.ours / row.net:.2f}x" if row.net > 0 else "-"
        print(
            f"goal: greedy at batch {batch} >= {goal:.0f}x OpenNMT-py: {verdict}, {ratio:.2f}x "
            f"in-loop ({row.ours:.0f} vs {row.loop:.0f} sentences/s; net {net_ratio}); the issue "
            f"measured OpenNMT-py at about {ISSUE_ONMT[batch]:,.0f} sentences/s"
        )
    if args.profile:
        print_profile(runs, python, loaded, run_dir)
    print(
        f"load average after: {load_average()} (other processes share the 2 cores: figures "
        f"are noisy); the script took {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
