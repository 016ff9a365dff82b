"""Lexical shortlists: the target words a sentence's translation may use, so that the
output layer scores a few hundred words instead of the whole target vocabulary.

This is Marian's ``--shortlist`` (used for fast CPU translation by Bergamot and Firefox
Translations): at batch 1 the output layer is most of what a decoder step reads (vocab x
hidden floats, 4.8 of the 6.1 MB of en-fr-additive's fused step), and scoring only the
shortlist cuts it by ~15x. A shortlist holds

- for each source token, the ``per_source`` target tokens that co-occur with it most
  strongly in the training pairs (Dice coefficient over sentence pairs), and
- the ``common`` most frequent target tokens and the special tokens, always.

A sentence's output space is the union over its tokens, the special tokens (decoding adds
them whatever the file holds, so a sentence can always end) and any target ids that must
be scorable (a forced prefix, forced targets); a batch's output layer scores the union of
its sentences' spaces, each sentence masked to its own, so a result does not depend on its
batch (top-k included: a sentence reports at most its own space's size).
Decoding with a shortlist is an approximation, opt-in: probabilities are normalised over
the shortlist, so a word outside it can never be chosen or shown among the top-k.
Attention, given the same tokens, is unchanged.
``bench/shortlist_check.py`` measures how often the output differs on a test split.

Stored in a model folder as ``shortlist.safetensors`` (no pickle): ``per_source``
(src_vocab, per_source), -1 where a source token has fewer partners, and ``common`` (n,),
int16 (int32 for target vocabularies over 32k ids); metadata ``format``/``version``,
``vocab`` (:func:`vocab_fingerprint` of the vocabularies it was built for: a shortlist
left from another model or run is refused, and a fresh training run deletes it first) and
the build parameters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor

SHORTLIST = "shortlist.safetensors"
FORMAT = "attnviz-shortlist"
VERSION = "1"
DEFAULT_PER_SOURCE = 50
DEFAULT_COMMON = 100


class ShortlistError(ValueError):
    """A shortlist file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class Shortlist:
    """Candidate target ids per source id, plus ids that are always candidates."""

    per_source: Tensor  # (src_vocab, per_source) int64, -1 = no candidate
    common: Tensor  # (n,) int64
    vocab: str  # vocab_fingerprint() of the vocabularies it was built for
    info: dict[str, Any]  # how it was built (parameters, data), for the model card

    @property
    def src_vocab_size(self) -> int:
        return int(self.per_source.size(0))

    def allowed(
        self,
        sources: Sequence[Sequence[int]],
        vocab_size: int,
        extra: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """(batch, vocab_size) bool: row b is True at the target ids sentence b may
        produce: the common ids, its source ids' candidates, and ``extra[b]``. In numpy:
        a dozen small operations, ~20x faster than the same in torch at batch 1."""
        batch = len(sources)
        src = np.full((batch, max(len(s) for s in sources)), -1, dtype=np.int64)
        for row, seq in enumerate(sources):
            src[row, : len(seq)] = seq
        if int(src.max()) >= self.src_vocab_size:
            raise ValueError(
                f"source id {int(src.max())} is outside the shortlist's source vocabulary "
                f"(0..{self.src_vocab_size - 1})"
            )
        cand = self.per_source.numpy()[np.maximum(src, 0)]  # (batch, longest, per_source)
        cand[src < 0] = -1
        cand = cand.reshape(batch, -1)
        mask = np.zeros((batch, vocab_size + 1), dtype=bool)  # the last column: "none"
        mask[np.arange(batch)[:, None], np.where(cand >= 0, cand, vocab_size)] = True
        mask[:, self.common.numpy()] = True
        for row, ids in enumerate(extra or ()):
            mask[row, list(ids)] = True
        return mask[:, :vocab_size]

    def ids_for(self, sources: Sequence[Sequence[int]], extra: Sequence[int] = ()) -> Tensor:
        """The sorted target ids (C,) int64 any of ``sources`` may produce, and ``extra``."""
        top = max(int(self.per_source.max()), int(self.common.max()), *extra, 0)
        mask = self.allowed(sources, top + 1, [extra] * len(sources))
        return torch.from_numpy(np.flatnonzero(mask.any(0)))

    def to_bytes(self) -> bytes:
        """The ``shortlist.safetensors`` file's content."""
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "vocab": self.vocab,
            "info": json.dumps(self.info),
        }
        small = max(int(self.per_source.max()), int(self.common.max())) < 2**15
        dtype = torch.int16 if small else torch.int32  # ids of vocabularies up to 32k: int16
        tensors = {
            "per_source": self.per_source.to(dtype).contiguous(),
            "common": self.common.to(dtype).contiguous(),
        }
        return save(tensors, metadata=meta)


def load_shortlist(
    directory: Path, src_vocab_size: int, tgt_vocab_size: int, vocab: str
) -> Shortlist | None:
    """The shortlist of a model folder; None when it has none. A file that is not a
    shortlist for these vocabularies (``vocab``: their :func:`vocab_fingerprint`) raises
    ShortlistError naming it."""
    path = Path(directory) / SHORTLIST
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise ShortlistError(f"{path}: not a readable safetensors file ({e})") from e
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ShortlistError(
            f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION!r}"
        )
    if meta.get("vocab") != vocab:
        raise ShortlistError(
            f"{path}: built for other vocabularies than the model's (fingerprint "
            f"{meta.get('vocab')!r}, the model's {vocab!r}); rebuild it with attnviz shortlist"
        )
    if set(tensors) != {"per_source", "common"}:
        raise ShortlistError(
            f"{path}: expected tensors per_source and common, got {sorted(tensors)}"
        )
    for name, t in tensors.items():
        if t.dtype not in (torch.int16, torch.int32, torch.int64) or t.numel() == 0:
            raise ShortlistError(f"{path}: {name} must be a non-empty integer tensor, got {t}")
    per_source, common = tensors["per_source"].long(), tensors["common"].long()
    if per_source.dim() != 2 or per_source.size(0) != src_vocab_size or common.dim() != 1:
        raise ShortlistError(
            f"{path}: per_source has shape {tuple(per_source.shape)} and common "
            f"{tuple(common.shape)}; the model needs ({src_vocab_size}, n) and (n,)"
        )
    for name, t in (("per_source", per_source), ("common", common)):
        low = -1 if name == "per_source" else 0
        if int(t.min()) < low or int(t.max()) >= tgt_vocab_size:
            raise ShortlistError(
                f"{path}: {name} holds ids outside the target vocabulary 0..{tgt_vocab_size - 1}"
            )
    try:
        info = json.loads(meta.get("info", "{}"))
    except json.JSONDecodeError as e:
        raise ShortlistError(f"{path}: its info metadata is not JSON ({e.msg})") from e
    return Shortlist(per_source, common, vocab, info if isinstance(info, dict) else {})


def build_shortlist(
    pairs: Iterable[tuple[Sequence[int], Sequence[int]]],
    src_vocab_size: int,
    tgt_vocab_size: int,
    special_ids: Sequence[int],
    *,
    vocab: str,
    per_source: int = DEFAULT_PER_SOURCE,
    common: int = DEFAULT_COMMON,
    info: dict[str, Any] | None = None,
) -> Shortlist:
    """Count, over (source ids, target ids) pairs, in how many pairs each source and
    target id occur together; keep each source id's ``per_source`` best partners by Dice
    coefficient ``2 c(s, t) / (c(s) + c(t))`` (ties: the smaller id) and the ``common``
    most frequent target ids, with ``special_ids``. ``vocab`` is the vocabularies'
    :func:`vocab_fingerprint`.

    The counts are sparse (only pairs of ids seen together), merged chunk by chunk, so
    memory follows the corpus's distinct co-occurrences, not source x target vocabulary."""
    if per_source < 1 or common < 0:
        raise ValueError(f"per_source must be >= 1 and common >= 0, got {per_source}, {common}")
    src_count = np.zeros(src_vocab_size, dtype=np.int64)
    tgt_count = np.zeros(tgt_vocab_size, dtype=np.int64)
    counted: list[tuple[np.ndarray, np.ndarray]] = []  # (keys s * T + t, counts), sorted
    chunk: list[np.ndarray] = []
    n_pairs = 0

    def merge() -> None:
        if len(counted) > 1:
            keys, inverse = np.unique(np.concatenate([k for k, _ in counted]), return_inverse=True)
            weights = np.concatenate([c for _, c in counted])
            counted[:] = [(keys, np.bincount(inverse, weights=weights).astype(np.int64))]

    def flush() -> None:
        if chunk:
            counted.append(np.unique(np.concatenate(chunk), return_counts=True))
            chunk.clear()
            if len(counted) >= 16:
                merge()

    for src, tgt in pairs:
        s = np.unique(np.asarray(src, dtype=np.int64))
        t = np.unique(np.asarray(tgt, dtype=np.int64))
        src_count[s] += 1
        tgt_count[t] += 1
        chunk.append((s[:, None] * tgt_vocab_size + t[None, :]).ravel())
        n_pairs += 1
        if len(chunk) >= 4096:
            flush()
    flush()
    merge()
    if n_pairs == 0:
        raise ValueError("no pairs to build a shortlist from")
    keys, counts = counted[0]
    src_ids, tgt_ids = np.divmod(keys, tgt_vocab_size)
    dice = 2.0 * counts / (src_count[src_ids] + tgt_count[tgt_ids])
    order = np.lexsort((tgt_ids, -dice, src_ids))  # by source, best first, then smaller id
    src_ids, tgt_ids = src_ids[order], tgt_ids[order]
    rank = np.arange(len(src_ids)) - np.searchsorted(src_ids, src_ids)  # within its source
    k = min(per_source, tgt_vocab_size)
    keep = rank < k
    best = np.full((src_vocab_size, k), -1, dtype=np.int64)  # -1: no partner
    best[src_ids[keep], rank[keep]] = tgt_ids[keep]
    frequent = np.argsort(-tgt_count, kind="stable")[:common]
    always = np.union1d(frequent, np.asarray(special_ids, dtype=np.int64))
    details = {"per_source": per_source, "common": common, "pairs": n_pairs, **(info or {})}
    return Shortlist(torch.from_numpy(best), torch.from_numpy(always), vocab, details)


def vocab_fingerprint(src_tokens: Sequence[str], tgt_tokens: Sequence[str]) -> str:
    """A short hash of both vocabularies: a shortlist is only read with the vocabularies
    it was built for."""
    data = json.dumps([list(src_tokens), list(tgt_tokens)], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]
