"""Evaluate a trained model on a parallel test set: BLEU, chrF, AER, BLEU by length.

    loaded = load_checkpoint("checkpoints/en-fr-additive")
    pairs = list(iter_pairs("data/corpus/test.tsv"))     # english, french, gold alignment
    result = evaluate(loaded, pairs)

What is measured (``evaluate`` returns one JSON-ready dict):

* ``bleu``, ``chrf``: sacrebleu ``corpus_score`` of the detokenized greedy output against
  the reference text, with their signatures (``bleu_signature``, ``chrf_signature``;
  ``case:lc`` for a model trained on lowercased text).
* ``aer``: alignment error rate (Och & Ney 2003, with the sure and possible links of the
  gold; sure links only give AER = 1 - F1) of the argmax attention alignment over words
  under **forced decoding of the reference**: the decoder reads the gold translation
  (teacher forcing), so every attention row belongs to a gold target piece and can be
  compared with the gold links. Corpus-level (counts summed over sentences).
  ``aer_precision`` and ``aer_recall`` come with it, and ``gold_sure_links``,
  ``gold_possible_links`` say what the gold held. Units, word matrices and the forced
  reading: :mod:`attnviz.model.evaluate_alignment`.
* ``aer_greedy``: the same for the attention of the **greedy output**, computed only on
  the sentences whose greedy output is exactly the reference (piece for piece, ended
  by ``</s>``); ``aer_greedy_sentences`` says how many (None when there are none).
* ``attention_entropy``: mean entropy in nats of the attention rows of the greedy output
  (every step, the ``</s>`` step included, over every source position including
  ``</s>``, every head; weighted by rows, i.e. by target tokens).
* ``perplexity``: of the reference under forced decoding (per target token, ``</s>``
  included).
* ``bleu_by_length``: sentences and BLEU/chrF per bucket of **source** length in words
  (a lab model's tokens; 1-5, 6-10, 11-15, 16-20, 21-25, 26+); every bucket is listed,
  empty ones with None.
* ``sentences``, ``seconds`` (all of it), ``translate_seconds`` (tokenizing, greedy
  decoding, detokenizing) and ``sentences_per_second`` (sentences / translate_seconds).

Without attention (the ``none`` mechanism) the AER fields and the entropy are None; so is
``aer`` when the data has no gold alignments.

Text goes through the model's own tokenizers (Moses tokens for a lab model, SentencePiece
pieces for real text) and hypotheses are detokenized by them.

Direction: pairs are given in the corpus's column order, English then French (the TSV
layout ``english<TAB>french<TAB>alignment``, gold links ``i-j`` English word i to French
word j, ``ipj`` for a possible link). A model whose card says ``source_lang: fr``,
``target_lang: en`` reads the French side as source; its gold links are flipped to ``j-i``
(see :func:`orient_pairs`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import BLEU, CHRF
from tqdm import tqdm

from attnviz.model.alignment import AerCounts, head_mean, row_entropy
from attnviz.model.checkpoint import CheckpointError, LoadedModel, load_checkpoint, read_card
from attnviz.model.checkpoint import write_card as write_model_card
from attnviz.model.corpus.readers import CorpusError, Pair, corpus_meta, iter_pairs
from attnviz.model.decoding import forced, greedy_batch
from attnviz.model.evaluate_alignment import (
    ForcedAer,
    Prepared,
    forced_reading,
    gold_link_counts,
    orient_pairs,
    prepare,
    word_links,
)
from attnviz.model.saliency import mean_rank_correlation, rank_correlation, saliency

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "checkpoints"

# (first, last) source lengths in tokens; None = no upper bound
LENGTH_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (1, 5),
    (6, 10),
    (11, 15),
    (16, 20),
    (21, 25),
    (26, None),
)
MAX_DECODE_LENGTH = 256
DEVICES_HELP = "auto, cpu, cuda, cuda:N, mps"


def bucket_label(first: int, last: int | None) -> str:
    return f"{first}+" if last is None else f"{first}-{last}"


def length_bucket(n_tokens: int) -> int:
    """Index in LENGTH_BUCKETS of a source of ``n_tokens`` tokens (0 tokens -> first)."""
    for k, (_, last) in enumerate(LENGTH_BUCKETS):
        if last is None or n_tokens <= last:
            return k
    return len(LENGTH_BUCKETS) - 1  # pragma: no cover (the last bucket is open)


def _batches(items: Sequence[Prepared], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar source length (less padding), longest first."""
    order = sorted(range(len(items)), key=lambda k: -len(items[k].src_ids))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def _corpus_scores(bleu: BLEU, chrf: CHRF, hyps: list[str], refs: list[str]) -> tuple[float, float]:
    return (
        float(bleu.corpus_score(hyps, [refs]).score),
        float(chrf.corpus_score(hyps, [refs]).score),
    )


def evaluate(
    loaded: LoadedModel,
    pairs: Iterable[Pair],
    *,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = True,
    max_length: int | None = None,
    pair_langs: tuple[str, str] = ("en", "fr"),
    saliency_sentences: int = 100,
    pretokenized: bool = False,
) -> dict[str, Any]:
    """Evaluate ``loaded`` on ``pairs`` (corpus order ``pair_langs``; see the module doc).

    ``pretokenized``: the pairs are tokens separated by spaces (the Hansards) and the gold
    indexes them; a Moses model reads them as they are (see
    :mod:`attnviz.model.evaluate_alignment`).

    ``saliency_sentences`` (evenly spread over the pairs; 0 = none) are read by forced
    decoding of their reference with input x gradient saliency, for the mean rank
    correlation between attention and saliency.
    ``limit`` keeps the first pairs only. ``max_length`` caps greedy decoding (default:
    twice the longest source in the batch plus 10, at most 256). Runs on the model's
    device. ValueError for no pairs, a bad limit or batch size, a direction the data
    does not have, or gold links out of range.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all pairs), got {limit}")
    if max_length is not None and not 1 <= max_length <= MAX_DECODE_LENGTH:
        raise ValueError(f"max_length must be in 1..{MAX_DECODE_LENGTH}, got {max_length}")
    pair_list = list(pairs)
    if limit is not None:
        pair_list = pair_list[:limit]
    if not pair_list:
        raise ValueError("no sentence pairs to evaluate")

    start = time.perf_counter()
    model = loaded.model
    cfg = model.config
    device = next(model.parameters()).device
    examples = orient_pairs(
        pair_list, loaded.source_lang, loaded.target_lang, pair_langs=pair_langs
    )
    items = prepare(loaded, examples, pretokenized=pretokenized)
    batches = _batches(items, batch_size)
    n = len(items)
    has_attention = model.has_attention

    hyps: list[str] = [""] * n
    greedy_counts = AerCounts()
    greedy_exact = 0  # sentences translated exactly that have gold links
    entropy_sum = 0.0
    entropy_rows = 0
    translate_seconds = 0.0
    bar = tqdm(
        total=2 * n,
        desc=f"evaluate {loaded.name}",
        unit="sent",
        disable=not progress,
        file=sys.stderr,
    )
    for batch in batches:
        t0 = time.perf_counter()
        longest = max(len(items[k].src_ids) for k in batch)
        steps = max_length or min(MAX_DECODE_LENGTH, 2 * longest + 10)
        results = greedy_batch(model, [items[k].src_ids for k in batch], max_length=steps)
        for k, res in zip(batch, results, strict=True):
            pieces = loaded.tgt_vocab.decode(res.best.token_ids)
            hyps[k] = loaded.tgt_tokenizer.detokenize(pieces)
        translate_seconds += time.perf_counter() - t0
        for k, res in zip(batch, results, strict=True):
            best = res.best
            if best.attention is None:
                continue
            ent = row_entropy(best.attention)  # (steps, heads)
            entropy_sum += float(ent.sum())
            entropy_rows += int(ent.size)
            item = items[k]
            finished = bool(best.token_ids) and best.token_ids[-1] == cfg.eos_id
            exact = finished and loaded.tgt_vocab.decode(best.token_ids) == item.tgt_tokens
            if exact and item.example.gold is not None:
                greedy_exact += 1
                greedy_counts = greedy_counts + item.counts(word_links(best.attention, item))
        bar.update(len(batch))

    scores = ForcedAer()
    nll_sum = 0.0
    nll_tokens = 0
    for batch in batches:
        total, count, attentions, layered = forced_reading(loaded, items, batch)
        nll_sum += total
        nll_tokens += count
        for k, att, heads in zip(batch, attentions, layered, strict=True):
            if att is not None and items[k].example.gold is not None:
                scores.add(items[k], att, heads)
        bar.update(len(batch))
    bar.close()
    correlation = _saliency_agreement(loaded, items, saliency_sentences, progress)

    lowercase = loaded.lowercase
    bleu_metric = BLEU(lowercase=lowercase)
    chrf_metric = CHRF(lowercase=lowercase)
    refs = [item.example.target for item in items]
    bleu, chrf = _corpus_scores(bleu_metric, chrf_metric, hyps, refs)

    buckets: list[dict[str, Any]] = []
    members: list[list[int]] = [[] for _ in LENGTH_BUCKETS]
    for k, item in enumerate(items):
        members[length_bucket(item.src_words)].append(k)
    for (first, last), ks in zip(LENGTH_BUCKETS, members, strict=True):
        entry: dict[str, Any] = {
            "bucket": bucket_label(first, last),
            "min_tokens": first,
            "max_tokens": last,
            "sentences": len(ks),
            "bleu": None,
            "chrf": None,
        }
        if ks:
            b, c = _corpus_scores(
                BLEU(lowercase=lowercase),
                CHRF(lowercase=lowercase),
                [hyps[k] for k in ks],
                [refs[k] for k in ks],
            )
            entry["bleu"], entry["chrf"] = b, c
        buckets.append(entry)

    seconds = time.perf_counter() - start
    with_gold = sum(item.example.gold is not None for item in items)
    sure_links, possible_links = gold_link_counts(items)
    forced_counts = scores.main
    forced_sentences = scores.sentences
    forced_ok = has_attention and forced_sentences > 0
    greedy_ok = has_attention and greedy_exact > 0
    return {
        "model": loaded.name,
        "source_lang": loaded.source_lang,
        "target_lang": loaded.target_lang,
        "attention": cfg.attention,
        "parameters": model.num_parameters(),
        "device": str(device),
        "sentences": n,
        "bleu": bleu,
        "chrf": chrf,
        "bleu_signature": str(bleu_metric.get_signature()),
        "chrf_signature": str(chrf_metric.get_signature()),
        "aer": forced_counts.aer if forced_ok else None,
        "aer_precision": forced_counts.precision if forced_ok else None,
        "aer_recall": forced_counts.recall if forced_ok else None,
        "aer_sentences": forced_sentences if has_attention else 0,
        "aer_greedy": greedy_counts.aer if greedy_ok else None,
        "aer_greedy_sentences": greedy_exact if has_attention else 0,
        "gold_alignments": with_gold,
        "gold_sure_links": sure_links,
        "gold_possible_links": possible_links,
        "attention_entropy": entropy_sum / entropy_rows if entropy_rows else None,
        "aer_by_head": [
            {"layer": layer, "head": head, "aer": counts.aer}
            for (layer, head), counts in sorted(scores.heads.items())
        ]
        or None,
        "aer_by_layer": [
            {"layer": layer, "aer": counts.aer} for layer, counts in sorted(scores.layers.items())
        ]
        or None,
        "saliency_correlation": correlation,
        "perplexity": math.exp(nll_sum / nll_tokens) if nll_tokens else None,
        "bleu_by_length": buckets,
        "length_of": "source tokens" if loaded.tokenizer_kind == "moses" else "source words",
        "seconds": seconds,
        "translate_seconds": translate_seconds,
        "sentences_per_second": n / translate_seconds if translate_seconds > 0 else None,
    }


def _saliency_agreement(
    loaded: LoadedModel, items: Sequence[Prepared], sentences: int, progress: bool
) -> dict[str, Any] | None:
    """Mean Spearman correlation, over target tokens, between each token's attention row
    (forced decoding of the reference) and its input x gradient saliency row."""
    model = loaded.model
    if not model.has_attention or sentences < 1 or not items:
        return None
    cfg = model.config
    step = max(1, len(items) // sentences)
    chosen = list(items[::step])[:sentences]
    rows: list[float] = []
    for item in tqdm(chosen, desc="saliency", unit="sent", disable=not progress, file=sys.stderr):
        target = [*item.tgt_ids, cfg.eos_id]
        reading = forced(model, item.src_ids, target).best
        assert reading.attention is not None
        sal = saliency(model, item.src_ids, target)  # (tgt_len + 1, src_len + 1)
        rows.extend(rank_correlation(head_mean(reading.attention), sal).tolist())
    return {
        "method": "input_x_gradient",
        "mean": mean_rank_correlation(rows),
        "sentences": len(chosen),
        "tokens": len(rows),
    }


# -- command ------------------------------------------------------------------------------


def resolve_model_dir(model: str, models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """``model`` as a path to a model folder, or else the name of one under ``models_dir``.

    CheckpointError listing the models found under ``models_dir`` when neither exists.
    """
    as_path = Path(model)
    if as_path.is_dir():
        return as_path
    named = models_dir / model
    if named.is_dir():
        return named
    found = (
        sorted(p.name for p in models_dir.iterdir() if (p / "card.json").is_file())
        if models_dir.is_dir()
        else []
    )
    valid = ", ".join(found) if found else f"none found in {models_dir}"
    raise CheckpointError(
        f"unknown model {model!r}: not a folder, and no model of that name in {models_dir}; "
        f"valid: {valid}"
    )


def resolve_device(device: str) -> torch.device:
    """``auto`` (cuda when available, else cpu) or a torch device name that is available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {device!r}; valid: {DEVICES_HELP}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available here")
    return dev


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _gold_kind(result: dict[str, Any]) -> str:
    """What the AER was measured against: sure links only, or sure and possible ones."""
    sure, possible = result.get("gold_sure_links"), result.get("gold_possible_links")
    if possible:
        return f"sure and possible links ({sure:,} sure, {possible:,} possible)"
    return "sure links" if sure is None else f"{sure:,} sure links"


def format_report(result: dict[str, Any], data: str | Path | None = None) -> str:
    """A readable report of an :func:`evaluate` result (with the sacrebleu signatures)."""
    r = result
    lines = [
        f"model      {r['model']}  ({r['source_lang']} -> {r['target_lang']}, "
        f"attention {r['attention']}, {r['parameters']:,} parameters)",
        f"data       {data if data is not None else '-'}: {r['sentences']} sentences",
        f"BLEU       {r['bleu']:6.2f}   {r['bleu_signature']}",
        f"chrF       {r['chrf']:6.2f}   {r['chrf_signature']}",
    ]
    if r["aer"] is None:
        why = "no attention" if r["attention"] == "none" else "no gold alignments in the data"
        lines.append(f"AER        n/a      ({why})")
    else:
        lines.append(
            f"AER        {r['aer']:6.3f}   forced decoding of the reference, argmax attention "
            f"over words, {r['aer_sentences']} sentences, {_gold_kind(r)} "
            f"(precision {_fmt(r['aer_precision'], '.3f')}, "
            f"recall {_fmt(r['aer_recall'], '.3f')})"
        )
    if r["attention"] != "none" and r["gold_alignments"]:
        if r["aer_greedy"] is None:
            lines.append("AER greedy n/a      (no greedy output equals its reference)")
        else:
            lines.append(
                f"AER greedy {r['aer_greedy']:6.3f}   greedy output, on the "
                f"{r['aer_greedy_sentences']} sentences translated exactly"
            )
    if r["attention_entropy"] is not None:
        lines.append(
            f"entropy    {r['attention_entropy']:6.3f}   nats, mean over the attention rows "
            "of the greedy output"
        )
    corr = r.get("saliency_correlation")
    if corr is not None:
        lines.append(
            f"saliency   {_fmt(corr['mean'], '6.3f')}   mean Spearman rho, attention vs input x "
            f"gradient, {corr['tokens']} tokens of {corr['sentences']} references"
        )
    if r.get("aer_by_head"):
        best = min(r["aer_by_head"], key=lambda h: h["aer"])
        lines.append(
            f"best head  {best['aer']:6.3f}   AER of layer {best['layer']} head {best['head']} "
            f"alone (of {len(r['aer_by_head'])} heads)"
        )
    if r.get("aer_by_layer"):
        by_layer = "  ".join(f"L{x['layer']} {x['aer']:.3f}" for x in r["aer_by_layer"])
        lines.append(f"by layer   {by_layer}   (AER of each layer's head average)")
    lines.append(f"perplexity {_fmt(r['perplexity'], '6.2f')}   of the references")
    speed = _fmt(r["sentences_per_second"], ".1f")
    lines.append(
        f"speed      {speed} sentences/s greedy on {r['device']} ({r['seconds']:.1f} s in all)"
    )
    lines.append("")
    lines.append(f"BLEU by length ({r['length_of']})")
    for b in r["bleu_by_length"]:
        lines.append(
            f"  {b['bucket']:>6}  {b['sentences']:6d} sentences  BLEU {_fmt(b['bleu'], '6.2f')}"
            f"  chrF {_fmt(b['chrf'], '6.2f')}"
        )
    return "\n".join(lines)


CARD_METRICS = (
    "bleu",
    "chrf",
    "bleu_signature",
    "chrf_signature",
    "aer",
    "aer_precision",
    "aer_recall",
    "aer_sentences",
    "aer_greedy",
    "aer_greedy_sentences",
    "gold_sure_links",
    "gold_possible_links",
    "attention_entropy",
    "perplexity",
    "sentences",
    "sentences_per_second",
    "device",
    "aer_by_head",
    "aer_by_layer",
    "saliency_correlation",
)


def store_metrics(directory: Path, result: dict[str, Any], data: str | Path) -> dict[str, Any]:
    """Write the metrics of ``result`` into the card of ``directory`` (atomically).

    The card's ``metrics`` are updated (other keys kept), ``bleu_by_length`` replaced.
    Returns the new card.
    """
    card = read_card(directory)
    metrics = dict(card.get("metrics") or {})
    metrics.update({key: result[key] for key in CARD_METRICS})
    metrics["data"] = str(data)
    metrics["evaluated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    card["metrics"] = metrics
    card["bleu_by_length"] = result["bleu_by_length"]
    write_model_card(directory, card)
    return card


def set_alignment_layer(directory: Path, result: dict[str, Any], data: str | Path) -> int:
    """Make the layer whose head average aligns best in ``result`` the model's main
    attention (``config.alignment_layer`` in its card, a view: no weight changes), and
    record how it was chosen. Returns the layer."""
    by_layer = result.get("aer_by_layer")
    if not by_layer:
        raise ValueError(
            "--set-alignment-layer needs a Transformer and gold alignments in the data "
            "(it picks the layer whose head average has the lowest AER)"
        )
    best = min(by_layer, key=lambda x: x["aer"])
    card = read_card(directory)
    card["config"] = {**card["config"], "alignment_layer": int(best["layer"])}
    card["alignment_layer_choice"] = {
        "data": str(data),
        "sentences": result["sentences"],
        "aer_by_layer": by_layer,
    }
    write_model_card(directory, card)
    return int(best["layer"])


def is_pretokenized(data: Path) -> bool:
    """True when the ``meta.json`` an import wrote beside ``data`` says its text is
    pre-tokenised (the Hansards), so that the gold indexes its whitespace tokens."""
    meta = corpus_meta(data)
    return bool(meta and meta.get("pretokenized"))


def evaluate_command(
    model: str,
    data: Path,
    limit: int | None = None,
    as_json: bool = False,
    write_card: bool = False,
    models_dir: Path = DEFAULT_MODELS_DIR,
    device: str = "auto",
    *,
    choose_layer: bool = False,
) -> int:
    """``attnviz evaluate``: evaluate a model folder (or a name under ``models_dir``) on a
    corpus file (TSV ``english<TAB>french[<TAB>alignment]`` or a Moses prefix; pre-tokenised
    when its ``meta.json`` says so, see :func:`is_pretokenized`), print a report or one
    JSON object, optionally store the metrics in the card, or (with
    ``choose_layer``, on held-out data such as a validation split) make the layer that
    aligns best the Transformer's main attention.

    Returns the exit code: 0, or 2 after a message on stderr (no such model or device,
    a bad data file, a direction the data does not have).
    """
    layer: int | None = None
    try:
        if write_card and choose_layer:
            raise ValueError(
                "--set-alignment-layer changes what the metrics measure: choose the layer on "
                "held-out data first, then evaluate again with --write-card"
            )
        dev = resolve_device(device)
        directory = resolve_model_dir(model, models_dir)
        loaded = load_checkpoint(directory, dev)
        pairs = list(iter_pairs(data))
        result = evaluate(
            loaded,
            pairs,
            limit=limit,
            progress=sys.stderr.isatty(),
            pretokenized=is_pretokenized(Path(data)),
        )
        if write_card:
            store_metrics(directory, result, data)
        if choose_layer:
            layer = set_alignment_layer(directory, result, data)
    except (CheckpointError, CorpusError, ValueError, OSError) as e:
        print(f"attnviz evaluate: error: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({"path": str(directory), "data": str(data), **result}))
    else:
        print(format_report(result, data))
        if write_card:
            print(f"\nmetrics written to {directory / 'card.json'}")
    if layer is not None:
        print(
            f"alignment layer set to {layer} in {directory / 'card.json'} "
            "(the main attention is now its head average)",
            file=sys.stderr,
        )
    return 0
