"""Model folders: weights in safetensors (no pickle: a checkpoint cannot run code) and a
JSON card (config, vocabularies, languages, training data and time, curves, metrics).

    checkpoints/en-fr-additive/
        model.safetensors   weights (fp16 storage by default, loaded as fp32)
        card.json           {"format": "attnviz-model", "version": 1, "config": {...},
                             "source_lang": "en", "target_lang": "fr", "lowercase": false,
                             "src_vocab": [...], "tgt_vocab": [...], "metrics": {...},
                             "sha256": {"model.safetensors": "...", ...}, ...}
        shortlist.safetensors   optional: candidate target words per source word, for
                                the opt-in fast output layer (attnviz/model/shortlist.py)
        sentencepiece.en.model, sentencepiece.fr.model
                            the subword tokenizers of a real-text model; the card's
                            "tokenizer" entry names them with their sha256 (a lab model's
                            card says {"kind": "moses"}: word tokens, no file)

Loading rebuilds the model exactly from the card's config (nanoGPT's ``model_args``) and
refuses, with a message naming the file and what is wrong, anything that does not fit.
The card's ``sha256`` entry holds the checksum of each tensor file (weights, shortlist),
written with it and checked on load: a flipped bit that leaves the numbers finite is
caught too. Cards written before it (the bundled ones) have none and load unchecked.
Writes are atomic: a kill at any moment leaves the previous version or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from attnviz.model.config import ModelConfig
from attnviz.model.factory import NMTModel, build_model
from attnviz.model.shortlist import (
    SHORTLIST,
    Shortlist,
    ShortlistError,
    load_shortlist,
    vocab_fingerprint,
)
from attnviz.model.tokenizers import (
    MosesTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    TokenizerError,
    piece_file,
)
from attnviz.model.vocab import Vocab, VocabError

FORMAT = "attnviz-model"
VERSION = 1
WEIGHTS = "model.safetensors"
CARD = "card.json"
CHECKSUMS = "sha256"  # the card's {file name: sha256} of its tensor files
_FILE_MODE = 0o644


class CheckpointError(ValueError):
    """A model folder cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class LoadedModel:
    model: NMTModel  # in eval mode, on the requested device
    src_vocab: Vocab
    tgt_vocab: Vocab
    card: dict[str, Any]
    path: Path
    shortlist: Shortlist | None = None  # the folder's shortlist.safetensors, if any
    tokenizers: tuple[Tokenizer, Tokenizer] | None = None  # (source, target); None: Moses
    # what was wrong but did not stop the model (a broken optional file left out)
    warnings: tuple[str, ...] = ()

    @property
    def src_tokenizer(self) -> Tokenizer:
        if self.tokenizers is not None:
            return self.tokenizers[0]
        return MosesTokenizer(self.source_lang, self.lowercase)

    @property
    def tgt_tokenizer(self) -> Tokenizer:
        if self.tokenizers is not None:
            return self.tokenizers[1]
        return MosesTokenizer(self.target_lang, self.lowercase)

    @property
    def tokenizer_kind(self) -> str:
        return self.src_tokenizer.kind

    @property
    def name(self) -> str:
        return str(self.card.get("name") or self.path.name)

    @property
    def source_lang(self) -> str:
        return str(self.card["source_lang"])

    @property
    def target_lang(self) -> str:
        return str(self.card["target_lang"])

    @property
    def lowercase(self) -> bool:
        return bool(self.card.get("lowercase", False))


def unique_state(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` with each tied tensor once (the first name): safetensors
    refuses tensors sharing memory, and a tied output layer is the target embedding."""
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for key, tensor in model.state_dict().items():
        ptr = tensor.data_ptr()
        if ptr in seen and tensor.numel():
            continue
        seen.add(ptr)
        out[key] = tensor
    return out


def load_unique_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Load what :func:`unique_state` saved (tied names are filled by their twin)."""
    tied = set(model.state_dict()) - set(unique_state(model))
    result = model.load_state_dict(state, strict=False)
    missing = sorted(set(result.missing_keys) - tied)
    if missing or result.unexpected_keys:
        raise ValueError(
            f"state does not fit: missing {missing}, unexpected {result.unexpected_keys}"
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600: others (a service user) must read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, card: dict[str, Any]) -> None:
    """CheckpointError naming ``path`` when the card records its sha256 and the file's
    differs; nothing when the card records none (a card older than the checksums)."""
    recorded = (card.get(CHECKSUMS) or {}).get(path.name)
    if not recorded:
        return
    actual = file_sha256(path)
    if actual != recorded:
        raise CheckpointError(
            f"{path}: sha256 {actual[:12]}... differs from the card's {str(recorded)[:12]}...: "
            "the file was changed or damaged after it was written"
        )


def record_sha256(directory: Path, name: str, sha256: str) -> None:
    """Record a tensor file's sha256 in the folder's card (after the file is written)."""
    card = read_card(directory)
    card[CHECKSUMS] = {**(card.get(CHECKSUMS) or {}), name: sha256}
    write_card(directory, card)


def write_card(directory: Path, card: dict[str, Any]) -> None:
    text = json.dumps(card, indent=1, ensure_ascii=False) + "\n"
    atomic_write_bytes(directory / CARD, text.encode("utf-8"))


def save_checkpoint(
    directory: Path,
    model: NMTModel,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    card: dict[str, Any],
    *,
    half: bool = True,
    tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
) -> None:
    """Write weights and card into ``directory`` (each file atomically; weights first).

    ``card`` holds everything else worth keeping (languages, data, curves, metrics); the
    config, the vocabularies and the tokenizer entry are added here so they always match
    the weights. SentencePiece ``tokenizers`` (source, target) are written beside them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer_entry = tokenizer_card(directory, tokenizers, bool(card.get("lowercase")))
    dtype = torch.float16 if half else torch.float32
    state = {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in unique_state(model).items()
    }
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{WEIGHTS}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": FORMAT, "version": str(VERSION)})
        os.chmod(tmp, _FILE_MODE)
        weights_sha = file_sha256(Path(tmp))
        os.replace(tmp, directory / WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    checksums = {WEIGHTS: weights_sha}
    if (directory / SHORTLIST).is_file():  # the shortlist stays: so does its checksum
        with contextlib.suppress(CheckpointError):
            old = (read_card(directory).get(CHECKSUMS) or {}).get(SHORTLIST)
            if old:
                checksums[SHORTLIST] = old
    full = {
        **card,
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "parameters": model.num_parameters(),
        "src_vocab": list(src_vocab.tokens),
        "tgt_vocab": list(tgt_vocab.tokens),
        "tokenizer": tokenizer_entry,
        CHECKSUMS: checksums,
    }
    write_card(directory, full)


def tokenizer_card(
    directory: Path, tokenizers: tuple[Tokenizer, Tokenizer] | None, lowercase: bool
) -> dict[str, Any]:
    """The card's ``tokenizer`` entry; writes SentencePiece model files into ``directory``."""
    if tokenizers is None or tokenizers[0].kind == "moses":
        return {"kind": "moses", "lowercase": lowercase}
    files: dict[str, Any] = {}
    for side, tok in zip(("source", "target"), tokenizers, strict=True):
        if not isinstance(tok, SentencePieceTokenizer):
            raise ValueError("both sides of a model use the same kind of tokenizer")
        name = piece_file(tok.lang)
        path = directory / name
        if not path.is_file() or path.read_bytes() != tok.model_proto:
            atomic_write_bytes(path, tok.model_proto)
        files[side] = {
            "file": name,
            "lang": tok.lang,
            "sha256": tok.sha256,
            "pieces": len(tok.pieces_list),
        }
    return {
        "kind": "sentencepiece",
        "normalization": "attnviz.model.normalize (NFC, spaces, format characters dropped)",
        "byte_fallback": True,
        **files,
    }


def load_tokenizers(directory: Path, card: dict[str, Any]) -> tuple[Tokenizer, Tokenizer] | None:
    """The tokenizers the card names (None for Moses word tokens); CheckpointError naming the
    file when one is missing, altered (sha256) or unreadable."""
    entry = card.get("tokenizer") or {"kind": "moses"}
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind == "moses":
        return None
    if kind != "sentencepiece":
        raise CheckpointError(
            f"{directory / CARD}: unknown tokenizer {kind!r}; valid: moses, sentencepiece"
        )
    out: list[Tokenizer] = []
    for side, lang in (("source", card["source_lang"]), ("target", card["target_lang"])):
        info = entry.get(side)
        if not isinstance(info, dict) or "file" not in info:
            raise CheckpointError(f"{directory / CARD}: the tokenizer's {side} file is not named")
        path = directory / str(info["file"])
        try:
            tok = SentencePieceTokenizer.load(str(lang), path)
        except TokenizerError as e:
            raise CheckpointError(str(e)) from e
        if info.get("sha256") and tok.sha256 != info["sha256"]:
            raise CheckpointError(
                f"{path}: sha256 {tok.sha256[:12]}... differs from the card's "
                f"{str(info['sha256'])[:12]}...: the file was changed or damaged"
            )
        out.append(tok)
    return out[0], out[1]


def read_card(directory: Path) -> dict[str, Any]:
    """The card of a model folder, validated (format, version, required fields)."""
    path = directory / CARD
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a model folder (no such directory)")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a model folder needs {CARD} and {WEIGHTS})")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8 text ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    if card.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {card.get('format')!r}, expected {FORMAT!r}")
    if card.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: version {card.get('version')!r} is not supported by this attnviz "
            f"(it reads version {VERSION}); retrain or convert the model"
        )
    for key in ("config", "src_vocab", "tgt_vocab", "source_lang", "target_lang"):
        if key not in card:
            raise CheckpointError(f"{path}: the field {key!r} is missing")
    return card


def load_checkpoint(
    directory: Path | str,
    device: torch.device | str = "cpu",
    *,
    skip_broken_optional: bool = False,
) -> LoadedModel:
    """Rebuild the model of a folder from its card and load its weights.

    A broken optional file (the shortlist: unreadable, built for other vocabularies, or
    not the file the card's checksum names) is a CheckpointError; with
    ``skip_broken_optional`` the model loads without it and ``LoadedModel.warnings`` says
    why (the service does this: one bad optional file does not take a model away).
    """
    directory = Path(directory)
    card = read_card(directory)
    card_path = directory / CARD
    try:
        config = ModelConfig.from_dict(card["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{card_path}: bad config: {e}") from e
    try:
        src_vocab = Vocab(card["src_vocab"])
        tgt_vocab = Vocab(card["tgt_vocab"])
    except (VocabError, ValueError, TypeError) as e:
        raise CheckpointError(f"{card_path}: bad vocabulary: {e}") from e
    if len(src_vocab) != config.src_vocab_size or len(tgt_vocab) != config.tgt_vocab_size:
        raise CheckpointError(
            f"{card_path}: vocabulary sizes ({len(src_vocab)}, {len(tgt_vocab)}) do not match "
            f"the config ({config.src_vocab_size}, {config.tgt_vocab_size})"
        )
    if not isinstance(card.get(CHECKSUMS) or {}, dict):
        raise CheckpointError(f"{card_path}: {CHECKSUMS!r} must map file names to checksums")
    tokenizers = load_tokenizers(directory, card)
    if tokenizers is not None:
        for tok, vocab in zip(tokenizers, (src_vocab, tgt_vocab), strict=True):
            assert isinstance(tok, SentencePieceTokenizer)
            if tok.pieces_list != list(vocab.tokens):
                raise CheckpointError(
                    f"{tok.source}: its pieces do not match the card's vocabulary"
                )
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    try:
        state = load_file(weights, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from e
    model = build_model(config)
    expected = unique_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not fit the config (missing: {missing[:5]}, "
            f"unexpected: {unexpected[:5]})"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{weights}: {key} has shape {tuple(tensor.shape)}, the config gives "
                f"{tuple(expected[key].shape)}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights}: {key} holds NaN or infinite values")
    check_sha256(weights, card)  # a flipped bit that left every number finite
    load_unique_state(model, {k: v.to(expected[k].dtype) for k, v in state.items()})
    warnings: list[str] = []
    try:
        shortlist = read_shortlist(directory, card, src_vocab, tgt_vocab)
    except CheckpointError as e:
        if not skip_broken_optional:
            raise
        shortlist = None
        warnings.append(f"{e}; the model serves without its shortlist")
    model.to(device).eval()
    return LoadedModel(
        model, src_vocab, tgt_vocab, card, directory, shortlist, tokenizers, tuple(warnings)
    )


def read_shortlist(
    directory: Path, card: dict[str, Any], src_vocab: Vocab, tgt_vocab: Vocab
) -> Shortlist | None:
    """The folder's shortlist (None when it has none); CheckpointError naming the file when
    it is unreadable, built for other vocabularies, or not the file the card's checksum
    names."""
    try:
        fingerprint = vocab_fingerprint(src_vocab.tokens, tgt_vocab.tokens)
        shortlist = load_shortlist(directory, len(src_vocab), len(tgt_vocab), fingerprint)
    except ShortlistError as e:
        raise CheckpointError(str(e)) from e
    if shortlist is not None:
        check_sha256(directory / SHORTLIST, card)
    return shortlist
