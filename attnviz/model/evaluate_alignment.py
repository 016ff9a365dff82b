"""The alignment half of :mod:`attnviz.model.evaluate`: test pairs in the model's direction,
cut into pieces (what the model reads) and words (what the gold indexes), forced decoding of
the references, and the AER of the attention's argmax word alignment.

Units. Gold links are Pharaoh ``i-j`` over **words**, 0-based, source-target:

- a SentencePiece model's words are the whitespace-separated words of the normalised text
  (``tokenizer.segment``);
- a Moses (lab) model's words are its tokens, one piece each (the generated corpus's gold
  indexes them);
- a pre-tokenised corpus (``"pretokenized": true`` in the ``meta.json`` beside it, as
  ``attnviz corpus import hansards`` writes) is aligned over its whitespace tokens whatever
  the model: a Moses model reads them as they are (not tokenized again; lower-cased when
  the model is), a SentencePiece model cuts each into pieces as usual.

The attention over pieces is brought to words with :func:`attnviz.model.words.word_matrix`
(source pieces summed, target pieces averaged) after the end token's row and column are
dropped; each target word is linked to the source word its row weighs most (one link per
target word). For a Moses model every word is one piece, so this is the argmax over tokens.

AER is Och & Ney's (2003) with sure and possible links (``ipj`` in the data, P := P ∪ S):
AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|); data without possible links gives 1 - F1 over the
sure links. Counts are summed over sentences (corpus level).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from attnviz.model.alignment import AerCounts, Link, aer_counts, argmax_alignment, head_mean
from attnviz.model.checkpoint import LoadedModel
from attnviz.model.corpus.readers import Pair
from attnviz.model.decoding import pad_batch
from attnviz.model.tokenizers import Segmented, Tokenizer, identity_spans
from attnviz.model.transformer import Transformer
from attnviz.model.words import Span, word_matrix

Links = tuple[Link, ...]


@dataclass(frozen=True)
class Example:
    """A test pair in the model's direction; gold links source-target over words (0-based):
    ``gold`` the sure links, ``possible`` the links marked possible (None: none marked)."""

    source: str
    target: str
    gold: Links | None
    lineno: int = 0
    possible: Links | None = None


@dataclass(frozen=True)
class Prepared:
    """An example cut into pieces and words, with the ids the model reads."""

    example: Example
    src_tokens: list[str]  # pieces
    tgt_tokens: list[str]
    src_spans: list[Span]  # src_tokens[a:b] for each source word
    tgt_spans: list[Span]
    src_ids: list[int]  # source pieces + eos
    tgt_ids: list[int]  # target pieces, no bos/eos

    @property
    def src_words(self) -> int:
        return len(self.src_spans)

    def counts(self, links: Iterable[Link]) -> AerCounts:
        """AER counts of ``links`` (over words) against this example's gold."""
        ex = self.example
        return aer_counts(links, ex.gold or (), ex.possible)


def orient_pairs(
    pairs: Iterable[Pair],
    source_lang: str,
    target_lang: str,
    *,
    pair_langs: tuple[str, str] = ("en", "fr"),
) -> list[Example]:
    """Put pairs read in the corpus order ``pair_langs`` into the model's direction.

    Same direction: as is. Opposite direction: source and target swapped and each gold
    link ``i-j`` (sure and possible) flipped to ``j-i``. Any other language pair is a
    ValueError.
    """
    if (source_lang, target_lang) == pair_langs:
        flip = False
    elif (target_lang, source_lang) == pair_langs:
        flip = True
    else:
        valid = f"{pair_langs[0]}->{pair_langs[1]}, {pair_langs[1]}->{pair_langs[0]}"
        raise ValueError(
            f"the model translates {source_lang}->{target_lang} but the data is "
            f"{pair_langs[0]}/{pair_langs[1]}; valid model directions for it: {valid}"
        )

    def flipped(links: Links | None) -> Links | None:
        return None if links is None else tuple((j, i) for i, j in links)

    out = []
    for p in pairs:
        if not flip:
            out.append(Example(p.source, p.target, p.alignment, p.lineno, p.possible))
        else:
            out.append(
                Example(p.target, p.source, flipped(p.alignment), p.lineno, flipped(p.possible))
            )
    return out


def segment(
    tokenizer: Tokenizer, text: str, *, pretokenized: bool = False, lowercase: bool = False
) -> Segmented:
    """Pieces, words and spans of ``text`` for the model (see the module doc on units)."""
    if pretokenized and tokenizer.kind == "moses":
        words = [w.lower() for w in text.split()] if lowercase else text.split()
        return Segmented(words, list(words), identity_spans(len(words)))
    return tokenizer.segment(text)


def prepare(
    loaded: LoadedModel, examples: Sequence[Example], *, pretokenized: bool = False
) -> list[Prepared]:
    """Cut every example into pieces and words; ValueError naming the line (or pair) for an
    empty sentence or a gold link outside the words."""
    lc = loaded.lowercase
    out = []
    for n, ex in enumerate(examples, start=1):
        src = segment(loaded.src_tokenizer, ex.source, pretokenized=pretokenized, lowercase=lc)
        tgt = segment(loaded.tgt_tokenizer, ex.target, pretokenized=pretokenized, lowercase=lc)
        where = f"line {ex.lineno}" if ex.lineno else f"pair {n}"
        if not src.pieces or not tgt.pieces:
            raise ValueError(f"{where}: empty sentence after tokenization")
        for kind, links in (("gold", ex.gold), ("possible gold", ex.possible)):
            for i, j in links or ():
                if i >= len(src.words) or j >= len(tgt.words):
                    raise ValueError(
                        f"{where}: {kind} link {i}-{j} is out of range for {len(src.words)} "
                        f"source ({loaded.source_lang}) and {len(tgt.words)} target "
                        f"({loaded.target_lang}) words; gold alignments index words, 0-based, "
                        "source-target (a lab model's tokens of attnviz.model.tokenize, else "
                        "the whitespace-separated words)"
                    )
        out.append(
            Prepared(
                ex,
                src.pieces,
                tgt.pieces,
                src.spans,
                tgt.spans,
                loaded.src_vocab.encode(src.pieces, add_eos=True),
                loaded.tgt_vocab.encode(tgt.pieces, add_eos=False),
            )
        )
    return out


def word_links(attention: np.ndarray, item: Prepared) -> list[Link]:
    """The argmax word alignment of an attention over ``item``'s pieces.

    ``attention`` is (steps, heads, src_cols) or (steps, src_cols), with at least the
    pieces' rows and columns (usually one more of each, the end token's, left out here).
    """
    att = head_mean(attention)  # (steps, src_cols)
    n_src, n_tgt = item.src_spans[-1][1], item.tgt_spans[-1][1]
    if att.shape[0] < n_tgt or att.shape[1] < n_src:
        raise ValueError(
            f"attention of shape {att.shape} (target steps, source positions) is too small "
            f"for {n_tgt} target and {n_src} source pieces"
        )
    words = word_matrix(att[:n_tgt, :n_src], item.src_spans, item.tgt_spans)
    return argmax_alignment(words)  # (target words, source words) -> one link per row


@torch.inference_mode()
def forced_reading(
    loaded: LoadedModel, items: Sequence[Prepared], batch: list[int]
) -> tuple[float, int, list[np.ndarray | None], list[np.ndarray | None]]:
    """Teacher forcing of the references of ``batch``: (sum of nll, tokens, attention per
    sentence (tgt_len + 1, heads, src_len + 1) or None, and every layer's heads per
    sentence (tgt_len + 1, layers, heads, src_len + 1) or None)."""
    model = loaded.model
    cfg = model.config
    device = next(model.parameters()).device
    src, src_mask = pad_batch([items[k].src_ids for k in batch], cfg.pad_id, device)
    tgt_in, _ = pad_batch([[cfg.bos_id, *items[k].tgt_ids] for k in batch], cfg.pad_id, device)
    tgt_out, out_mask = pad_batch(
        [[*items[k].tgt_ids, cfg.eos_id] for k in batch], cfg.pad_id, device
    )  # (batch, tgt_len)
    layered = None
    if isinstance(model, Transformer):  # one pass gives the logits and every layer's maps
        logits, maps = model.read(src, src_mask, tgt_in)
        cross = maps.cross  # (batch, layers, heads, tgt_len, src_len)
        attention = cross[:, model.alignment_layer].transpose(1, 2)  # (b, t, h, s)
        layered = cross.permute(0, 3, 1, 2, 4).float().cpu().numpy()  # (b, t, layers, h, s)
    else:
        logits, attention = model(src, src_mask, tgt_in)  # (b, tgt_len, vocab), (b, t, h, s)
        if attention is not None and attention.size(2) > 1:
            layered = attention.unsqueeze(2).float().cpu().numpy()  # (b, t, 1, h, s)
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)  # (batch, tgt_len)
    total = float(nll.masked_fill(~out_mask, 0.0).sum())
    tokens = int(out_mask.sum())
    att = attention.float().cpu().numpy() if attention is not None else None
    per_sentence: list[np.ndarray | None] = []
    per_head: list[np.ndarray | None] = []
    for row, k in enumerate(batch):
        n_tgt = len(items[k].tgt_ids) + 1
        n_src = len(items[k].src_ids)
        per_sentence.append(None if att is None else att[row, :n_tgt, :, :n_src])
        per_head.append(None if layered is None else layered[row, :n_tgt, :, :, :n_src])
    return total, tokens, per_sentence, per_head


@dataclass
class ForcedAer:
    """AER counts of forced decoding, summed over sentences: the main attention, each
    layer's head average (Transformer) and each head (several heads or layers)."""

    main: AerCounts = field(default_factory=AerCounts)
    heads: dict[tuple[int, int], AerCounts] = field(default_factory=dict)
    layers: dict[int, AerCounts] = field(default_factory=dict)
    sentences: int = 0

    def add(self, item: Prepared, attention: np.ndarray, layered: np.ndarray | None) -> None:
        """One sentence: its main attention (tgt_len + 1, heads, src_len + 1) and, when the
        model has several heads or layers, all of them (tgt_len + 1, layers, heads, src_len + 1)."""
        self.main = self.main + item.counts(word_links(attention, item))
        self.sentences += 1
        if layered is None:
            return
        for layer in range(layered.shape[1]):
            if layered.shape[1] > 1:  # the layer's head average (one layer: the main)
                counts = item.counts(word_links(layered[:, layer], item))
                self.layers[layer] = self.layers.get(layer, AerCounts()) + counts
            for head in range(layered.shape[2]):
                counts = item.counts(word_links(layered[:, layer, head], item))
                key = (layer, head)
                self.heads[key] = self.heads.get(key, AerCounts()) + counts


def gold_link_counts(items: Iterable[Prepared]) -> tuple[int, int]:
    """(sure links, links marked only possible) in the gold of ``items`` (each counted once
    per sentence; a link marked both ways is sure)."""
    sure = possible = 0
    for item in items:
        gold = set(item.example.gold or ())
        sure += len(gold)
        possible += len(set(item.example.possible or ()) - gold)
    return sure, possible
