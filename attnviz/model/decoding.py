"""Decoding: pure functions (model, source ids, options) -> DecodeResult.

Everything runs under ``torch.inference_mode()``; per-step tensors stay on the model's
device and are moved to the host once, at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnviz.model.seq2seq import Seq2Seq


@dataclass(frozen=True)
class Hypothesis:
    """One output sentence: target ids (ending with eos when it finished) and per step
    the log-probability and attention over the source."""

    token_ids: tuple[int, ...]
    token_logprobs: tuple[float, ...]
    attention: np.ndarray | None  # (tgt_len, heads, src_len); rows sum to 1 over the source
    score: float  # total log-probability


@dataclass(frozen=True)
class DecodeResult:
    hypotheses: tuple[Hypothesis, ...]  # best first

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into (batch, max_len) ids and a bool mask (True = real)."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    ids = ids.to(device)
    return ids, ids != pad_id


@torch.inference_mode()
def greedy_batch(
    model: Seq2Seq, sources: Sequence[Sequence[int]], *, max_length: int = 100
) -> list[DecodeResult]:
    """Greedy decoding of many sentences in one padded batch.

    ``sources`` are source id lists (ending with eos, as the model was trained).
    Returns one DecodeResult per source, in order.
    """
    cfg = model.config
    device = next(model.parameters()).device
    src, src_mask = pad_batch(sources, cfg.pad_id, device)  # (batch, src_len)
    batch = src.size(0)
    enc = model.encode(src, src_mask)
    state = model.init_state(enc)
    prev = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens: list[Tensor] = []
    logprobs: list[Tensor] = []
    weights: list[Tensor] = []
    for t in range(max_length):
        logits, state, w = model.step(prev, state, enc, step_index=t)
        lp = torch.log_softmax(logits, dim=-1)  # (batch, vocab)
        best_lp, best = lp.max(dim=-1)  # (batch,)
        tokens.append(best)
        logprobs.append(best_lp)
        if w is not None:
            weights.append(w)  # (batch, heads, src_len)
        done = done | (best == cfg.eos_id)
        prev = best
        if bool(done.all()):
            break
    # one transfer to the host
    tok = torch.stack(tokens, 1).cpu().numpy()  # (batch, steps)
    lps = torch.stack(logprobs, 1).float().cpu().numpy()  # (batch, steps)
    att = torch.stack(weights, 1).float().cpu().numpy() if weights else None
    lengths = src_mask.sum(1).cpu().numpy()
    results = []
    for b in range(batch):
        row = tok[b].tolist()
        n = row.index(cfg.eos_id) + 1 if cfg.eos_id in row else len(row)
        a = att[b, :n, :, : lengths[b]] if att is not None else None  # (n, heads, src_len)
        hyp = Hypothesis(
            tuple(row[:n]), tuple(float(x) for x in lps[b, :n]), a, float(lps[b, :n].sum())
        )
        results.append(DecodeResult((hyp,)))
    return results
