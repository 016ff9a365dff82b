"""Training: ``attnviz train``.

- Data: a generated corpus directory (train.tsv + valid.tsv) or a user corpus (TSV or
  Moses files) with a held-out part taken for validation. Tokens are cached next to the
  data (``.cache/``) so fourteen models do not tokenize the same corpus fourteen times.
- Length-bucketed batches with masks, teacher forcing, Adam with gradient clipping,
  linear warm-up then halving on a validation plateau, label smoothing, early stopping on
  validation BLEU (sacrebleu), a tqdm bar showing loss and tokens/s.
- Every validation writes the best model folder (safetensors + card) and the training
  state (weights, optimizer, RNG, position in the data) atomically: ``--resume`` continues
  from the last state, and a kill at any moment never leaves a broken file. ``--resume``
  also finishes what a kill cut short after the last state (the shortlist) and removes
  the temporary files of writes a kill interrupted.
- Several processes through ``torchrun`` (DDP; gloo on CPU, nccl on CUDA): each rank takes
  every world-size-th batch, gradients are averaged, rank 0 validates and writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import sacrebleu
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from attnviz.model.attention import Attention
from attnviz.model.checkpoint import (
    CARD,
    CHECKSUMS,
    WEIGHTS,
    CheckpointError,
    atomic_write_bytes,
    load_tokenizers,
    load_unique_state,
    read_card,
    read_shortlist,
    record_sha256,
    save_checkpoint,
    unique_state,
)
from attnviz.model.config import ModelConfig
from attnviz.model.corpus.readers import Pair, iter_pairs, read_tsv
from attnviz.model.decoding import greedy_batch, pad_batch
from attnviz.model.factory import NMTModel, build_model
from attnviz.model.shortlist import (
    DEFAULT_COMMON,
    DEFAULT_PER_SOURCE,
    SHORTLIST,
    build_shortlist,
    vocab_fingerprint,
)
from attnviz.model.tokenizers import KINDS as TOKENIZER_KINDS
from attnviz.model.tokenizers import (
    MosesTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    piece_file,
    train_sentencepiece,
)
from attnviz.model.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab

Tokenizers = tuple[Tokenizer, Tokenizer]

STATE_POINTER = "train_state.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in the card and the resume state."""

    data: str  # corpus directory, a .tsv file, or a Moses prefix
    out: str  # model folder to write
    source_lang: str = "en"
    target_lang: str = "fr"
    architecture: str = "rnn"  # rnn | transformer
    attention: str = "additive"
    decoder_style: str = "bahdanau"
    rnn_type: str = "gru"
    emb_dim: int = 128
    hidden_dim: int = 256
    dropout: float = 0.1
    attention_heads: int = 4
    local_window: int = 3
    layers: int = 3  # transformer encoder and decoder layers
    ff_dim: int = 1024  # transformer feed-forward size
    alignment_layer: int = -1  # transformer layer whose cross-attention is the main one
    tie_embeddings: bool = False
    batch_size: int = 64
    lr: float = 2e-3
    # the attention's parameters learn at lr * attention_lr_scale: Adam grows the weights of an
    # unbounded score (dot, general, location) fast enough to saturate the softmax on one
    # position within a few hundred steps, and the attention never recovers; 1/16 gives the
    # dynamics of a score scaled by 1/16 while the model stays the literature's unscaled one
    attention_lr_scale: float = 1.0
    # the attention's training schedule (Attention.anneal) over this many steps: hard moves
    # from soft to one-hot, dot from a sqrt(d) temperature to none; 0 = none
    attention_anneal_steps: int = 0
    lr_schedule: str = "plateau"  # plateau: halve on a BLEU plateau; linear: decay to 5%
    warmup_steps: int = 200
    clip: float = 1.0
    label_smoothing: float = 0.1
    max_epochs: int = 10
    max_minutes: float = 0.0  # 0 = no limit; the budget every bundled model gets
    max_steps: int = 0  # 0 = no limit
    valid_every: int = 1000  # steps between validations (and checkpoints)
    valid_sentences: int = 500
    patience: int = 4  # validations without a better BLEU before stopping
    min_freq: int = 1
    max_length: int = 80  # longer training pairs (tokens) are left out
    # add this fraction of the training set again as pairs joined two by two (source after
    # source, target after target): the generated corpus has 242 pairs of 26+ words in 195k,
    # and a Transformer, whose attention learned position patterns only at the lengths it
    # saw, loses its place past them; an RNN carries its position in its state
    concat_fraction: float = 0.0
    lowercase: bool = False
    # moses: word tokens (the lab corpus); sentencepiece: subword pieces trained on the
    # training split (real text: no word is ever unknown)
    tokenizer: str = "moses"
    src_pieces: int = 8000  # SentencePiece vocabulary of the source language
    tgt_pieces: int = 8000  # ... and of the target language
    piece_model: str = "unigram"  # unigram | bpe
    seed: int = 1
    device: str = "auto"
    threads: int = 0  # 0 = torch's default
    accumulate: int = 1  # gradient accumulation (micro-batches per optimizer step)
    name: str = ""

    def __post_init__(self) -> None:
        langs = ("en", "fr")
        if self.source_lang not in langs or self.target_lang not in langs:
            raise ValueError(f"languages must be one of {langs}")
        if self.source_lang == self.target_lang:
            raise ValueError("source and target language must differ")
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ValueError(
                f"unknown tokenizer {self.tokenizer!r}; valid: {', '.join(TOKENIZER_KINDS)}"
            )
        if self.piece_model not in ("unigram", "bpe"):
            raise ValueError(f"unknown piece_model {self.piece_model!r}; valid: bpe, unigram")
        if self.tokenizer == "sentencepiece" and self.lowercase:
            raise ValueError("lowercase is for the Moses word tokenizer, not sentencepiece")
        schedules = ("plateau", "linear")
        if self.lr_schedule not in schedules:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; valid: {schedules}")
        if self.lr_schedule == "linear" and self.max_steps < 1:
            raise ValueError("lr_schedule 'linear' decays over max_steps: give --max-steps")
        if not 0 < self.attention_lr_scale <= 1e3:
            raise ValueError(f"attention_lr_scale must be > 0, got {self.attention_lr_scale}")
        if self.attention_anneal_steps < 0:
            raise ValueError(
                f"attention_anneal_steps must be >= 0, got {self.attention_anneal_steps}"
            )
        if not 0 <= self.concat_fraction <= 1:
            raise ValueError(f"concat_fraction must be in [0, 1], got {self.concat_fraction}")
        for name in ("batch_size", "valid_every", "max_epochs", "accumulate", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def model_config(self, src_vocab: int, tgt_vocab: int) -> ModelConfig:
        return ModelConfig(
            src_vocab_size=src_vocab,
            tgt_vocab_size=tgt_vocab,
            emb_dim=self.emb_dim,
            hidden_dim=self.hidden_dim,
            rnn_type=self.rnn_type,
            decoder_style=self.decoder_style,
            attention=self.attention,
            attention_heads=self.attention_heads,
            local_window=self.local_window,
            dropout=self.dropout,
            tie_embeddings=self.tie_embeddings,
            architecture=self.architecture,
            layers=self.layers,
            ff_dim=self.ff_dim,
            alignment_layer=self.alignment_layer,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
        )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def describe_architecture(config: ModelConfig) -> str:
    """One line for the model card and the page."""
    if config.architecture == "transformer":
        return (
            f"transformer, {config.layers}+{config.layers} pre-LN layers, "
            f"{config.attention_heads} heads, d_model {config.hidden_dim}"
        )
    return f"bi-{config.rnn_type} encoder, {config.decoder_style} GRU decoder"


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when present, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name == "cuda" or name.startswith("cuda:"):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Example:
    src: tuple[str, ...]
    tgt: tuple[str, ...]
    ref: str  # the target sentence as written, for BLEU


def _fingerprint(tok: Tokenizer) -> str:
    if isinstance(tok, SentencePieceTokenizer):
        return f"spm-{tok.sha256[:16]}"
    return "moses.lc" if getattr(tok, "lowercase", False) else "moses"


def _cached_tokens(path: Path, texts: list[str], tok: Tokenizer) -> list[list[str]]:
    """Tokenize ``texts`` once; the cache is keyed by the file's size and mtime and by the
    tokenizer (a SentencePiece model by its sha256)."""
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    cache = path.parent / ".cache" / f"{path.name}.{tok.lang}.{_fingerprint(tok)}.tok"
    if cache.exists():
        lines = cache.read_text(encoding="utf-8").split("\n")
        if lines[0] == key and len(lines) - 1 == len(texts):
            return [line.split(" ") if line else [] for line in lines[1:]]
    tokens = [tok.segment(t).pieces for t in texts]
    body = "\n".join([key, *(" ".join(t) for t in tokens)])
    with contextlib.suppress(OSError):  # a read-only corpus: no cache, still correct
        atomic_write_bytes(cache, body.encode("utf-8"))
    return tokens


def _texts(pairs: list[Pair], cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """(source texts, target texts) in the model's direction (corpora are English first)."""
    en_first = cfg.source_lang == "en"
    src_text = [p.source if en_first else p.target for p in pairs]
    tgt_text = [p.target if en_first else p.source for p in pairs]
    return src_text, tgt_text


def _examples(pairs: list[Pair], path: Path, cfg: TrainConfig, toks: Tokenizers) -> list[Example]:
    src_text, tgt_text = _texts(pairs, cfg)
    src = _cached_tokens(path, src_text, toks[0])
    tgt = _cached_tokens(path, tgt_text, toks[1])
    return [Example(tuple(s), tuple(t), r) for s, t, r in zip(src, tgt, tgt_text, strict=True)]


@dataclass(frozen=True)
class _Split:
    train: list[Pair]
    valid: list[Pair]
    train_path: Path  # the file the training pairs come from (token cache key)
    valid_path: Path
    meta: dict[str, Any]


def _split(cfg: TrainConfig) -> _Split:
    data = Path(cfg.data)
    meta: dict[str, Any] = {"path": str(data)}
    if data.is_dir() and (data / "train.tsv").exists():
        train_pairs = read_tsv(data / "train.tsv")
        valid_pairs = read_tsv(data / "valid.tsv") if (data / "valid.tsv").exists() else []
        if (data / "meta.json").exists():
            meta["corpus"] = json.loads((data / "meta.json").read_text(encoding="utf-8"))
        return _Split(train_pairs, valid_pairs, data / "train.tsv", data / "valid.tsv", meta)
    pairs = list(iter_pairs(data))
    path = data if data.is_file() else Path(str(data) + "." + cfg.source_lang)
    rng = random.Random(cfg.seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    n_valid = min(1000, max(1, len(pairs) // 50))
    # both halves key the same cache: tokens of the whole file, split after
    return _Split(pairs, [], path, path, {**meta, "holdout": [order, n_valid]})


def make_tokenizers(cfg: TrainConfig, split: _Split | None = None) -> Tokenizers:
    """The run's tokenizers: Moses, or SentencePiece models found in the output folder
    (a resumed run) or trained on the training split's texts."""
    if cfg.tokenizer == "moses":
        return (
            MosesTokenizer(cfg.source_lang, cfg.lowercase),
            MosesTokenizer(cfg.target_lang, cfg.lowercase),
        )
    out = Path(cfg.out)
    made: list[Tokenizer] = []
    for lang, size, pick in (
        (cfg.source_lang, cfg.src_pieces, 0),
        (cfg.target_lang, cfg.tgt_pieces, 1),
    ):
        path = out / piece_file(lang)
        if path.is_file():
            made.append(SentencePieceTokenizer.load(lang, path))
            continue
        split = split or _split(cfg)
        texts = _texts(_train_part(split), cfg)[pick]
        tok = train_sentencepiece(texts, lang, vocab_size=size, model_type=cfg.piece_model)
        atomic_write_bytes(path, tok.model_proto)
        made.append(tok)
    return made[0], made[1]


def _train_part(split: _Split) -> list[Pair]:
    if "holdout" not in split.meta:
        return split.train
    order, n_valid = split.meta["holdout"]
    return [split.train[i] for i in order[n_valid:]]


def load_data(
    cfg: TrainConfig, tokenizers: Tokenizers | None = None
) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """(train, valid, description of the data for the card)."""
    split = _split(cfg)
    toks = tokenizers or make_tokenizers(cfg, split)
    meta = dict(split.meta)
    holdout = meta.pop("holdout", None)
    if holdout is None:
        train = _examples(split.train, split.train_path, cfg, toks)
        valid = _examples(split.valid, split.valid_path, cfg, toks) if split.valid else []
    else:
        every = _examples(split.train, split.train_path, cfg, toks)
        order, n_valid = holdout
        valid = [every[i] for i in order[:n_valid]]
        train = [every[i] for i in order[n_valid:]]
    if not valid:
        valid = train[: min(200, len(train))]
    before = len(train)
    train = [e for e in train if 0 < len(e.src) <= cfg.max_length and len(e.tgt) <= cfg.max_length]
    meta.update(train_pairs=len(train), valid_pairs=len(valid), dropped_long=before - len(train))
    if cfg.concat_fraction > 0:
        joined = concatenated(train, cfg.concat_fraction, cfg.seed, cfg.max_length)
        meta.update(concatenated_pairs=len(joined))
        train = train + joined
    return train, valid, meta


def concatenated(
    examples: Sequence[Example], fraction: float, seed: int, max_length: int
) -> list[Example]:
    """``fraction * len(examples)`` new examples, each two random ones joined (source after
    source, target after target), none longer than ``max_length`` tokens on either side."""
    rng = random.Random(f"concat:{seed}")
    want = int(fraction * len(examples))
    joined: list[Example] = []
    for _ in range(4 * want):  # bounded: pairs too long together are skipped
        if len(joined) == want:
            break
        a, b = rng.choice(examples), rng.choice(examples)
        if len(a.src) + len(b.src) <= max_length and len(a.tgt) + len(b.tgt) <= max_length:
            joined.append(Example(a.src + b.src, a.tgt + b.tgt, f"{a.ref} {b.ref}"))
    return joined


def make_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle, sort by length within chunks of 100 batches, cut into batches, shuffle."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 100
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def tensors(
    examples: Sequence[Example], src_vocab: Vocab, tgt_vocab: Vocab, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """src (B,S), src_mask (B,S), tgt_in (B,T) = bos + y, tgt_out (B,T) = y + eos."""
    src, src_mask = pad_batch([src_vocab.encode(e.src) for e in examples], PAD_ID, device)
    tgt_ids = [tgt_vocab.encode(e.tgt, add_eos=False) for e in examples]
    tgt_in, _ = pad_batch([[BOS_ID, *t] for t in tgt_ids], PAD_ID, device)
    tgt_out, _ = pad_batch([[*t, EOS_ID] for t in tgt_ids], PAD_ID, device)
    return src, src_mask, tgt_in, tgt_out


# ------------------------------------------------------------------- validation
def translate_examples(
    model: NMTModel,
    examples: Sequence[Example],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    target: Tokenizer,
    batch_size: int = 100,
) -> list[str]:
    """Greedy translations of ``examples``, detokenized, in order."""
    out: list[str] = [""] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].src))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        sources = [src_vocab.encode(examples[i].src) for i in idx]
        results = greedy_batch(model, sources, max_length=2 * max(map(len, sources)) + 10)
        for i, r in zip(idx, results, strict=True):
            out[i] = target.detokenize(tgt_vocab.decode(r.best.token_ids))
    return out


def validate(
    model: NMTModel, valid: Sequence[Example], src_vocab: Vocab, tgt_vocab: Vocab, target: Tokenizer
) -> float:
    was_training = model.training
    model.eval()
    hyps = translate_examples(model, valid, src_vocab, tgt_vocab, target)
    model.train(was_training)
    return float(sacrebleu.corpus_bleu(hyps, [[e.ref for e in valid]]).score)


# ------------------------------------------------------------------------ state
@dataclass
class Progress:
    """Where training is; saved with every checkpoint, restored by ``--resume``."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already consumed (all ranks)
    best_bleu: float = -1.0
    bad_validations: int = 0
    seconds: float = 0.0
    tokens: int = 0
    lr_scale: float = 1.0
    batches_per_epoch: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    done: bool = False


def _param_groups(model: NMTModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The attention mechanism's parameters (RNN models) in their own group, whose learning
    rate is ``cfg.attention_lr_scale`` times the others'."""
    attention = getattr(getattr(model, "decoder", None), "attention", None)
    mine = {id(p) for p in attention.parameters()} if isinstance(attention, nn.Module) else set()
    rest = [p for p in model.parameters() if id(p) not in mine]
    groups: list[dict[str, Any]] = [{"params": rest, "lr_factor": 1.0}]
    if mine:
        own = [p for p in model.parameters() if id(p) in mine]
        groups.append({"params": own, "lr_factor": cfg.attention_lr_scale})
    return groups


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    flat: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                flat[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return flat, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, flat: dict[str, Tensor], meta: Any) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in flat.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_state(
    out: Path,
    model: NMTModel,
    opt: torch.optim.Optimizer,
    progress: Progress,
    cfg: TrainConfig,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
) -> None:
    """Write the resume state to a fresh folder, then switch the pointer file to it (a
    second save at the same step, as at the end of a run, gets a folder of its own: the
    one the pointer names stays whole until the pointer has moved)."""
    folder = out / f".state-{progress.step}"
    n = 0
    while folder.exists():
        n += 1
        folder = out / f".state-{progress.step}.{n}"
    folder.mkdir(parents=True)
    flat, opt_meta = _flatten_optimizer(opt)
    tensors_out = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in unique_state(model).items()
    }
    tensors_out.update(flat)
    tensors_out["rng.torch"] = torch.get_rng_state()
    save_file(tensors_out, folder / "state.safetensors")
    meta = {
        "progress": asdict(progress),
        "train_config": asdict(cfg),
        "optimizer": opt_meta,
        "src_vocab": list(src_vocab.tokens),
        "tgt_vocab": list(tgt_vocab.tokens),
        "rng_python": random.getstate()[1],
    }
    (folder / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    pointer = {"folder": folder.name, "step": progress.step}
    atomic_write_bytes(out / STATE_POINTER, json.dumps(pointer).encode("utf-8"))
    for old in out.glob(".state-*"):  # older states are no longer pointed at
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)


def load_state(out: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    pointer_path = out / STATE_POINTER
    if not pointer_path.exists():
        raise FileNotFoundError(f"{pointer_path}: no training state to resume from")
    try:
        pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        folder = out / pointer["folder"]
        meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        flat = load_file(folder / "state.safetensors")
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{pointer_path}: the training state cannot be read ({e})") from e
    return flat, meta


def learning_rate(cfg: TrainConfig, step: int, plateau_scale: float = 1.0) -> float:
    """Linear warm-up, then either the plateau scale (halved on BLEU plateaus) or a linear
    decay down to 5% of ``lr`` at ``max_steps``."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_schedule == "linear":
        left = (cfg.max_steps - step) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.lr * min(warm, 0.05 + 0.95 * max(0.0, min(1.0, left)))
    return cfg.lr * warm * plateau_scale


# ------------------------------------------------------------------------- main
def anneal_progress(cfg: TrainConfig, step: int) -> float:
    """Where the attention's training schedule is at ``step``: 0 -> 1 linearly."""
    if cfg.attention_anneal_steps < 1:
        return 1.0
    return min(1.0, step / cfg.attention_anneal_steps)


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def train(cfg: TrainConfig, *, resume: bool = False, progress_bar: bool = True) -> Progress:
    """Train (or resume) a model as ``cfg`` says; returns where it ended."""
    rank, world = _dist_info()
    device = resolve_device(cfg.device)
    owns_group = False
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            owns_group = True
    progress = _train(cfg, device, rank, world, resume=resume, progress_bar=progress_bar)
    if owns_group:
        # a rank leaving while gloo still has threads talking to the others aborts
        # ("terminate called without an active exception"): meet, then tear down
        dist.barrier()
        dist.destroy_process_group()
    return progress


def _train(
    cfg: TrainConfig,
    device: torch.device,
    rank: int,
    world: int,
    *,
    resume: bool,
    progress_bar: bool,
) -> Progress:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    if rank == 0:
        remove_interrupted_writes(out)
    if not resume and rank == 0:  # a fresh run: an earlier run's files do not fit it
        (out / SHORTLIST).unlink(missing_ok=True)
        for lang in (cfg.source_lang, cfg.target_lang):
            (out / piece_file(lang)).unlink(missing_ok=True)
    if world > 1 and cfg.tokenizer == "sentencepiece":  # rank 0 trains the pieces first
        if rank == 0:
            make_tokenizers(cfg)
        dist.barrier()
    toks = make_tokenizers(cfg)
    train_set, valid_set, data_meta = load_data(cfg, toks)
    flat: dict[str, Tensor] = {}
    meta: dict[str, Any] = {}
    if resume:
        flat, meta = load_state(out)
        src_vocab, tgt_vocab = Vocab(meta["src_vocab"]), Vocab(meta["tgt_vocab"])
    elif isinstance(toks[0], SentencePieceTokenizer) and isinstance(
        toks[1], SentencePieceTokenizer
    ):
        src_vocab, tgt_vocab = toks[0].vocab(), toks[1].vocab()
    else:
        src_vocab = Vocab.build((e.src for e in train_set), min_freq=cfg.min_freq)
        tgt_vocab = Vocab.build((e.tgt for e in train_set), min_freq=cfg.min_freq)
    model = build_model(cfg.model_config(len(src_vocab), len(tgt_vocab))).to(device)
    opt = torch.optim.Adam(_param_groups(model, cfg), lr=cfg.lr)
    progress = Progress()
    if resume:
        load_unique_state(model, {k[6:]: v for k, v in flat.items() if k.startswith("model.")})
        _restore_optimizer(opt, flat, meta["optimizer"])
        progress = Progress(**meta["progress"])
        torch.set_rng_state(flat["rng.torch"])
        state = meta["rng_python"]
        random.setstate((3, tuple(state), None))
        if progress.done:  # trained: finish what a kill may have cut short after the state
            if rank == 0 and not shortlist_is_current(out, src_vocab, tgt_vocab):
                _final_shortlist(out, cfg, train_set, data_meta, src_vocab, tgt_vocab)
            return progress
    ddp: nn.Module = model
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model)
    loss_fn = nn.CrossEntropyLoss(
        ignore_index=PAD_ID, label_smoothing=cfg.label_smoothing, reduction="sum"
    )
    src_lengths = [len(e.src) for e in train_set]
    valid_subset = valid_set[: cfg.valid_sentences]
    card_base = {
        "name": cfg.name or out.name,
        "source_lang": cfg.source_lang,
        "target_lang": cfg.target_lang,
        "lowercase": cfg.lowercase,
        "tokenizer_settings": (
            {
                "kind": cfg.tokenizer,
                "model_type": cfg.piece_model,
                "source_pieces": cfg.src_pieces,
                "target_pieces": cfg.tgt_pieces,
            }
            if cfg.tokenizer == "sentencepiece"
            else {"kind": cfg.tokenizer}
        ),
        "architecture": describe_architecture(model.config),
        "data": data_meta,
        "train_config": asdict(cfg),
    }
    started = time.perf_counter() - progress.seconds
    is_main = rank == 0
    bar = tqdm(
        total=cfg.max_steps or None,
        initial=progress.step,
        disable=not (progress_bar and is_main),
        unit="step",
        dynamic_ncols=True,
    )
    model.train()
    attentions = [m for m in model.modules() if isinstance(m, Attention)]

    def stop_now() -> bool:
        minutes = (time.perf_counter() - started) / 60
        over = (cfg.max_minutes and minutes >= cfg.max_minutes) or (
            cfg.max_steps and progress.step >= cfg.max_steps
        )
        return bool(over)

    window_loss = 0.0
    window_tokens = 0
    window_start = time.perf_counter()
    limit = early = False  # limit: a step/time budget ran out; early: no more progress
    if resume:  # a budget already spent (killed after the last state): no step beyond it
        limit = _agree(stop_now(), world)
    step_loss = 0.0
    while progress.epoch < cfg.max_epochs and not (limit or early):
        batches = make_batches(src_lengths, cfg.batch_size, cfg.seed, progress.epoch)
        progress.batches_per_epoch = len(batches)
        # every rank sees the same list and takes its share of each group of world batches
        group = world * cfg.accumulate
        while progress.batch_in_epoch + group <= len(batches):
            mine = batches[progress.batch_in_epoch : progress.batch_in_epoch + group]
            mine = mine[rank * cfg.accumulate : (rank + 1) * cfg.accumulate]
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, progress.step, progress.lr_scale) * g["lr_factor"]
            for module in attentions:
                module.anneal(anneal_progress(cfg, progress.step))
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in mine:
                src, src_mask, tgt_in, tgt_out = tensors(
                    [train_set[i] for i in micro], src_vocab, tgt_vocab, device
                )
                logits, _ = ddp(src, src_mask, tgt_in)  # (B, T, V)
                n_tokens = int((tgt_out != PAD_ID).sum())
                loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1))
                (loss / n_tokens / cfg.accumulate).backward()
                step_loss += loss.item() / n_tokens / cfg.accumulate
                window_tokens += n_tokens
                progress.tokens += n_tokens
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            progress.step += 1
            progress.batch_in_epoch += group
            window_loss += step_loss
            if is_main:
                bar.update(1)
                if progress.step % 20 == 0:
                    rate = window_tokens * world / max(1e-9, time.perf_counter() - window_start)
                    bar.set_postfix(
                        epoch=progress.epoch + 1,
                        loss=f"{window_loss / 20:.3f}",
                        tok_s=f"{rate:,.0f}",
                    )
                    window_loss, window_tokens = 0.0, 0
                    window_start = time.perf_counter()
            limit = _agree(stop_now(), world)
            if progress.step % cfg.valid_every == 0 or limit:
                early = _validate_and_save(
                    cfg, model, opt, progress, valid_subset, src_vocab, tgt_vocab,
                    card_base, started, step_loss, is_main, world, toks,
                )  # fmt: skip
            if limit or early:
                break
        if not (limit or early):
            progress.epoch += 1
            progress.batch_in_epoch = 0
    if not (limit or early) and (not progress.curve or progress.curve[-1]["step"] != progress.step):
        _validate_and_save(
            cfg, model, opt, progress, valid_subset, src_vocab, tgt_vocab,
            card_base, started, step_loss, is_main, world, toks,
        )  # fmt: skip
    # finished for good (resume does nothing) unless a step or time budget cut it short
    progress.done = not limit
    if is_main:
        save_state(out, model, opt, progress, cfg, src_vocab, tgt_vocab)
        _final_shortlist(out, cfg, train_set, data_meta, src_vocab, tgt_vocab)
    bar.close()
    return progress


def _final_shortlist(
    out: Path,
    cfg: TrainConfig,
    train_set: Sequence[Example],
    data_meta: dict[str, Any],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
) -> None:
    """The last step of a run: the shortlist, built from the training pairs (rank 0)."""
    if not (out / CARD).is_file():
        return
    joined = data_meta.get("concatenated_pairs", 0)  # appended last; not real pairs
    real = train_set[: len(train_set) - joined]
    try:
        write_shortlist(out, real, src_vocab, tgt_vocab, data=cfg.data)
    except (MemoryError, OSError, ValueError) as e:  # the model itself is saved
        tqdm.write(f"no shortlist written ({e}); build one with attnviz shortlist")


# what atomic writes into a model folder leave while they run (tempfile.mkstemp names)
_TEMPORARY = (
    f".{WEIGHTS}.*.tmp",
    f".{CARD}.*.tmp",
    f".{STATE_POINTER}.*.tmp",
    f".{SHORTLIST}.*.tmp",
    f".{piece_file('*')}.*.tmp",
)


def remove_interrupted_writes(out: Path) -> list[Path]:
    """Remove what writes cut short by a kill left in a model folder: temporary files, and
    state folders the pointer does not name. Returns what was removed."""
    removed: list[Path] = []
    if not out.is_dir():
        return removed
    for pattern in _TEMPORARY:
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    try:
        current = json.loads((out / STATE_POINTER).read_text(encoding="utf-8"))["folder"]
    except (OSError, ValueError, KeyError, TypeError):
        return removed  # no readable pointer: load_state says so; leave the states alone
    for folder in out.glob(".state-*"):
        if folder.is_dir() and folder.name != current:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def shortlist_is_current(out: Path, src_vocab: Vocab, tgt_vocab: Vocab) -> bool:
    """The folder's shortlist is there, readable, built for these vocabularies, and the one
    its card's checksum names (a card with checksums but none for it: written before the
    shortlist was, so the run did not finish)."""
    try:
        card = read_card(out)
        if read_shortlist(out, card, src_vocab, tgt_vocab) is None:
            return False
    except CheckpointError:
        return False
    checksums = card.get(CHECKSUMS) or {}
    return not checksums or SHORTLIST in checksums


def _agree(flag: bool, world: int) -> bool:
    """True on every rank when any rank says so (clocks differ, so a time budget must)."""
    if world == 1:
        return flag
    shared = torch.tensor([float(flag)])
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    return bool(shared[0])


def _validate_and_save(
    cfg: TrainConfig,
    model: NMTModel,
    opt: torch.optim.Optimizer,
    progress: Progress,
    valid: Sequence[Example],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    card_base: dict[str, Any],
    started: float,
    last_loss: float,
    is_main: bool,
    world: int,
    toks: Tokenizers,
) -> bool:
    """Validate on rank 0, keep the best model, write the state; True = stop early."""
    out = Path(cfg.out)
    stop = torch.zeros(1)
    if world > 1:  # log the loss of the whole step, not rank 0's share
        shared = torch.tensor([last_loss])
        dist.all_reduce(shared)
        last_loss = float(shared[0]) / world
    if is_main:
        bleu = validate(model, valid, src_vocab, tgt_vocab, toks[1])
        progress.seconds = time.perf_counter() - started
        progress.curve.append(
            {
                "step": progress.step,
                "epoch": round(
                    progress.epoch + progress.batch_in_epoch / max(1, progress.batches_per_epoch), 3
                ),
                "loss": round(last_loss, 4),
                "valid_bleu": round(bleu, 2),
                "seconds": round(progress.seconds, 1),
            }
        )
        if bleu > progress.best_bleu:
            progress.best_bleu = bleu
            progress.bad_validations = 0
            card = {
                **card_base,
                "training_seconds": round(progress.seconds, 1),
                "steps": progress.step,
                "tokens": progress.tokens,
                "valid_bleu": round(bleu, 2),
                "curve": progress.curve,
            }
            save_checkpoint(out, model, src_vocab, tgt_vocab, card, tokenizers=toks)
        else:
            # while the attention anneals, validation (eval mode: the mechanism itself) is
            # not yet what training optimises: no plateau halving or early stop before then
            if anneal_progress(cfg, progress.step) >= 1:
                progress.bad_validations += 1
                if cfg.lr_schedule == "plateau" and progress.bad_validations % 2 == 0:
                    progress.lr_scale /= 2  # plateau: halve the learning rate
            _update_curve(out, progress)
        tqdm.write(
            f"step {progress.step}: loss {last_loss:.3f} valid BLEU {bleu:.2f} "
            f"(best {progress.best_bleu:.2f}) {progress.seconds / 60:.1f} min"
        )
        if progress.bad_validations >= cfg.patience:
            stop[0] = 1
        save_state(out, model, opt, progress, cfg, src_vocab, tgt_vocab)
    if world > 1:
        dist.broadcast(stop, 0)
        # every rank follows rank 0's learning-rate decisions
        scale = torch.tensor([progress.lr_scale])
        dist.broadcast(scale, 0)
        progress.lr_scale = float(scale[0])
    return bool(stop[0])


def _update_curve(out: Path, progress: Progress) -> None:
    """Keep the best model's card showing the whole curve, not only up to its step."""
    from attnviz.model.checkpoint import write_card

    try:
        card = read_card(out)
    except ValueError:
        return
    card["curve"] = progress.curve
    card["training_seconds"] = round(progress.seconds, 1)
    write_card(out, card)


def write_shortlist(
    out: Path,
    examples: Sequence[Example],
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    *,
    data: str,
    per_source: int = DEFAULT_PER_SOURCE,
    common: int = DEFAULT_COMMON,
) -> Path:
    """Build the model folder's lexical shortlist from its training pairs (see
    :mod:`attnviz.model.shortlist`) and write it atomically."""
    pairs = (
        (src_vocab.encode(e.src, add_eos=True), tgt_vocab.encode(e.tgt, add_eos=True))
        for e in examples
    )
    shortlist = build_shortlist(
        tqdm(pairs, total=len(examples), desc="shortlist", unit="pair", leave=False),
        len(src_vocab),
        len(tgt_vocab),
        (PAD_ID, UNK_ID, BOS_ID, EOS_ID),
        vocab=vocab_fingerprint(src_vocab.tokens, tgt_vocab.tokens),
        per_source=per_source,
        common=common,
        info={"data": data},
    )
    path = out / SHORTLIST
    data_bytes = shortlist.to_bytes()
    atomic_write_bytes(path, data_bytes)
    with contextlib.suppress(CheckpointError):  # a folder without a card: nothing to record
        record_sha256(out, SHORTLIST, hashlib.sha256(data_bytes).hexdigest())
    return path


def shortlist_command(
    folder: Path, data: str | None, per_source: int, common: int
) -> tuple[Path, int, int]:
    """``attnviz shortlist``: (re)build a model folder's shortlist from training pairs
    (default: the data its card says it was trained on; a corpus directory's train.tsv).
    Returns (path written, source tokens, pairs read)."""
    card = read_card(folder)
    trained = card.get("train_config") or {}
    data = data or trained.get("data")
    if not data:
        raise ValueError(f"{folder}: the card names no training data; give --data")
    cfg = TrainConfig(
        data=str(data),
        out=str(folder),
        source_lang=card["source_lang"],
        target_lang=card["target_lang"],
        lowercase=bool(card.get("lowercase", False)),
        max_length=10**9,  # every pair counts, also those too long to train on
        seed=int(trained.get("seed", 1)),
    )
    tokenizers = load_tokenizers(folder, card) or make_tokenizers(cfg)
    examples, _, _ = load_data(cfg, tokenizers)
    src_vocab, tgt_vocab = Vocab(card["src_vocab"]), Vocab(card["tgt_vocab"])
    path = write_shortlist(
        folder,
        examples,
        src_vocab,
        tgt_vocab,
        data=str(data),
        per_source=per_source,
        common=common,
    )
    return path, len(src_vocab), len(examples)


def config_from_args(values: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from CLI values, rejecting unknown keys with the valid ones."""
    valid = TrainConfig.field_names()
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown}; valid: {', '.join(valid)}")
    return TrainConfig(**values)
