"""Gradient saliency of the source tokens, to draw beside attention, as small pure functions.

    matrix = saliency(model, src_ids, tgt_ids)                    # (tgt_len, src_len) signed
    shown = normalise_rows(matrix)                                # |attribution|, rows sum to 1
    rho = rank_correlation(head_mean(attention), matrix)          # (tgt_len,) Spearman
    overall = mean_rank_correlation(rho)

Row ``t`` of a saliency matrix answers "which source tokens made the model predict target
token ``t``?": under teacher forcing the decoder reads ``bos + target_ids[:t]`` and the
attribution is taken of ``log p(target_ids[t])`` with respect to the output of the model's
source token embedding (``model.source_embedding``), summed over the embedding dimension,
one number per source token. Rows and columns line up with the rows and columns of the
attention matrix of :func:`attnviz.model.decoding.forced` on the same ids.

Methods (``METHODS``, by name). With ``e`` the source embeddings (src_len, emb) and
``f(e) = log p(y_t | e)``, both are ``sum_emb e * mean_k grad f(alpha_k * e)``:

- ``input_x_gradient``: one point, ``alpha = 1``: ``sum_emb e * df/de``;
- ``integrated_gradients`` (Sundararajan et al. 2017): ``steps`` midpoints
  ``alpha_k = (k + 1/2) / steps`` of the straight path from a zero-embedding baseline, so
  that each row sums to about ``f(e) - f(0)`` (completeness; exact as ``steps`` grows).
  The baseline zeroes the token embeddings only: whatever the model adds after the
  embedding layer (positions in a Transformer) stays.

Attributions are raw and signed: positive means the token's embedding raises the
log-probability of the target token. :func:`normalise_rows` makes them comparable to
attention (magnitudes, rows summing to 1).

Any model following the teacher-forcing protocol works: ``model.config.bos_id``,
``model.source_embedding`` (an ``nn.Embedding`` called once per forward, for the source),
and ``logits, attention = model(src, src_mask, tgt_in)`` with logits
(batch, tgt_len, tgt_vocab). The gradient is read with a forward hook on the embedding
that swaps its output for a leaf tensor (scaled by ``alpha``); ``torch.autograd.grad`` is
taken with respect to that tensor only, so no ``.grad`` is left on the parameters. The
model runs in eval mode on its own device, and its training flag is restored afterwards;
the functions work under ``torch.inference_mode()`` / ``torch.no_grad()`` too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor, nn

__all__ = [
    "METHODS",
    "mean_rank_correlation",
    "normalise_rows",
    "rank_correlation",
    "saliency",
]


def _input_x_gradient_alphas(steps: int) -> list[float]:
    """A single point at the input itself (``steps`` is not used)."""
    return [1.0]


def _integrated_gradients_alphas(steps: int) -> list[float]:
    """Midpoints of ``steps`` equal pieces of [0, 1] (Riemann midpoint rule)."""
    return [(k + 0.5) / steps for k in range(steps)]


# name -> the path points alpha at which the gradient is averaged (see the module docstring)
METHODS: dict[str, Callable[[int], list[float]]] = {
    "input_x_gradient": _input_x_gradient_alphas,
    "integrated_gradients": _integrated_gradients_alphas,
}


def saliency(
    model: nn.Module,
    source_ids: Sequence[int],
    target_ids: Sequence[int],
    *,
    method: str = "input_x_gradient",
    steps: int = 16,
) -> np.ndarray:
    """Attribution of each target token to each source token, (tgt_len, src_len) float64.

    ``source_ids`` are given as the model reads them (end token included), ``target_ids``
    as it emits them (end them with eos to explain the end of the sentence too); row ``t``
    attributes ``log p(target_ids[t] | source, target_ids[:t])``. ``method`` is a name in
    ``METHODS``; ``steps`` is the number of path points of ``integrated_gradients`` (one
    forward pass of batch ``steps``). Costs one forward and one backward pass of
    ``len(alphas) * tgt_len`` rows (in chunks of ``ROWS_PER_PASS``).
    """
    try:
        alphas_of = METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown saliency method {method!r}; valid: {', '.join(sorted(METHODS))}"
        ) from None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    embedding = getattr(model, "source_embedding", None)
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(
            f"{type(model).__name__} has no source_embedding (nn.Embedding) to take the gradient at"
        )
    config = getattr(model, "config", None)
    bos_id = getattr(config, "bos_id", None)
    if bos_id is None:
        raise TypeError(f"{type(model).__name__} has no config.bos_id to start the target with")
    tgt_vocab = getattr(config, "tgt_vocab_size", None)
    src_list = [int(i) for i in source_ids]
    tgt_list = [int(i) for i in target_ids]
    if not src_list:
        raise ValueError("the source is empty: saliency needs at least one source token")
    if not tgt_list:
        raise ValueError("the target is empty: saliency needs at least one target token")
    bad_src = [i for i in src_list if not 0 <= i < embedding.num_embeddings]
    if bad_src:
        raise ValueError(
            f"source has id {bad_src[0]}, outside the source vocabulary "
            f"0..{embedding.num_embeddings - 1}"
        )
    if tgt_vocab is not None:
        bad_tgt = [i for i in tgt_list if not 0 <= i < tgt_vocab]
        if bad_tgt:
            raise ValueError(
                f"target has id {bad_tgt[0]}, outside the target vocabulary 0..{tgt_vocab - 1}"
            )

    alphas = alphas_of(steps)
    modes = [(module, module.training) for module in model.modules()]  # restored after
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            matrix = _path_attribution(model, embedding, int(bos_id), src_list, tgt_list, alphas)
    finally:
        for module, training in modes:
            module.training = training
    return matrix


ROWS_PER_PASS = 512  # (alpha, target token) rows per forward/backward pass


def _path_attribution(
    model: nn.Module,
    embedding: nn.Embedding,
    bos_id: int,
    src_list: list[int],
    tgt_list: list[int],
    alphas: list[float],
) -> np.ndarray:
    """``sum_emb e * mean_k grad log p(y_t)`` at ``alpha_k * e``.

    One batch row per (alpha, target token) pair: row (k, t) reads the sentence with its
    source embeddings scaled by alpha_k and contributes log p(y_t). The rows are
    independent, so one backward pass of their sum gives every row its own gradient:
    a forward and a backward per ``ROWS_PER_PASS`` rows, instead of one backward per token
    (which re-traverses the whole recurrent graph each time).
    """
    device = embedding.weight.device
    src_len, tgt_len = len(src_list), len(tgt_list)
    pairs = [(alpha, t) for alpha in alphas for t in range(tgt_len)]
    total = torch.zeros(tgt_len, src_len, dtype=torch.float64, device=device)
    for lo in range(0, len(pairs), ROWS_PER_PASS):
        chunk = pairs[lo : lo + ROWS_PER_PASS]
        scale = torch.tensor([a for a, _ in chunk], device=device)  # (rows,)
        which = torch.tensor([t for _, t in chunk], dtype=torch.long, device=device)  # (rows,)
        contribution = _rows_gradient(model, embedding, bos_id, src_list, tgt_list, scale, which)
        total.index_add_(0, which, contribution.to(torch.float64))  # (tgt_len, src_len)
    matrix = total / len(alphas)  # mean over the path points
    return np.asarray(matrix.detach().to("cpu").numpy())


def _rows_gradient(
    model: nn.Module,
    embedding: nn.Embedding,
    bos_id: int,
    src_list: list[int],
    tgt_list: list[int],
    scale: Tensor,
    which: Tensor,
) -> Tensor:
    """For each row: e . d log p(y_which) / d(scaled embedding) -> (rows, src_len)."""
    device = embedding.weight.device
    rows, src_len, tgt_len = scale.numel(), len(src_list), len(tgt_list)
    src = torch.tensor([src_list], dtype=torch.long, device=device).repeat(rows, 1)
    # src: (rows, src_len), identical rows
    src_mask = torch.ones(rows, src_len, dtype=torch.bool, device=device)  # (rows, src_len)
    tgt_in = torch.tensor([[bos_id, *tgt_list[:-1]]], dtype=torch.long, device=device)
    tgt_in = tgt_in.repeat(rows, 1)  # (rows, tgt_len)
    gold = torch.tensor(tgt_list, dtype=torch.long, device=device)[which]  # (rows,)

    captured: list[tuple[Tensor, Tensor]] = []  # (embedding (rows, src_len, emb), leaf)

    def swap_output(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if captured:  # only the first call of a forward pass is the source side
            return output
        base = output.detach()  # (rows, src_len, emb)
        leaf = (base * scale.view(rows, 1, 1).to(base.dtype)).requires_grad_(True)
        captured.append((base, leaf))
        return leaf

    handle = embedding.register_forward_hook(swap_output)
    try:
        logits, _ = model(src, src_mask, tgt_in)  # (rows, tgt_len, tgt_vocab)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(
            f"{type(model).__name__}.forward never called its source_embedding, so there is "
            "no gradient to read"
        )
    base, leaf = captured[0]
    if logits.shape[:2] != (rows, tgt_len):
        raise RuntimeError(
            f"expected logits of shape ({rows}, {tgt_len}, vocab), got {tuple(logits.shape)}"
        )
    row_ids = torch.arange(rows, device=device)
    step_logits = logits[row_ids, which].float()  # (rows, tgt_vocab): each row's own step
    picked = F.log_softmax(step_logits, dim=-1)[row_ids, gold]  # (rows,) log p(y_t)
    # the rows are independent, so the gradient of their sum is each row's own
    (grad,) = torch.autograd.grad(picked.sum(), leaf, allow_unused=True)
    if grad is None:  # the output does not depend on the source at all
        return torch.zeros(rows, src_len, device=device)
    return (base * grad).sum(dim=-1)  # (rows, src_len)


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """|attribution| scaled so that each row (last axis) sums to 1, for drawing beside
    attention; an all-zero row stays all zero. (tgt_len, src_len) -> same shape, float64."""
    magnitude = np.abs(np.asarray(matrix, dtype=np.float64))
    if magnitude.ndim == 0:
        raise ValueError("expected rows along the last axis, got a scalar")
    totals = magnitude.sum(axis=-1, keepdims=True)  # (tgt_len, 1)
    safe = np.where(totals > 0, totals, 1.0)
    return np.asarray(magnitude / safe)


def rank_correlation(attention: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """Spearman rank correlation, per target step, of an attention row and the |saliency|
    row: (tgt_len, src_len) twice -> (tgt_len,) float64 in [-1, 1].

    ``attention`` is one matrix (average the heads first with
    :func:`attnviz.model.alignment.head_mean`). Ties get average ranks. A row is NaN where
    the correlation is undefined: the attention row or the |saliency| row is constant
    (e.g. one-hot attention over two positions that tie, an all-zero saliency row, or a
    single source position).
    """
    att = np.asarray(attention, dtype=np.float64)
    sal = np.abs(np.asarray(saliency, dtype=np.float64))
    if att.shape != sal.shape or att.ndim != 2:
        raise ValueError(
            f"attention and saliency must both be (tgt_len, src_len) matrices of one shape, "
            f"got {att.shape} and {sal.shape}"
        )
    out = np.full(att.shape[0], np.nan)  # (tgt_len,)
    for t in range(att.shape[0]):
        a, s = att[t], sal[t]  # (src_len,)
        if a.size < 2 or np.ptp(a) == 0 or np.ptp(s) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = float(spearmanr(a, s).statistic)
        out[t] = rho
    return out


def mean_rank_correlation(rows: np.ndarray | Sequence[float]) -> float:
    """Mean of per-row correlations, NaN rows ignored; NaN when every row is NaN (or none)."""
    values = np.asarray(rows, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan
