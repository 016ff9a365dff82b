"""Training on a real (small) generated corpus: resume, DDP, checkpoints, early stop."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnviz.app.cli import main
from attnviz.model.checkpoint import CheckpointError, load_checkpoint
from attnviz.model.shortlist import load_shortlist
from attnviz.model.train import (
    Example,
    Progress,
    TrainConfig,
    anneal_progress,
    concatenated,
    config_from_args,
    learning_rate,
    load_data,
    load_state,
    make_batches,
    save_state,
    train,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"


def tiny(out: Path, **kw: object) -> TrainConfig:
    base = TrainConfig(
        data=str(SAMPLE),
        out=str(out),
        emb_dim=16,
        hidden_dim=16,
        batch_size=16,
        valid_every=6,
        valid_sentences=20,
        max_steps=12,
        dropout=0.0,
        threads=1,
        seed=3,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    pointer = json.loads((folder / "train_state.json").read_text())
    flat = load_file(folder / pointer["folder"] / "state.safetensors")
    return {k: v for k, v in flat.items() if k.startswith("model.")}


def test_batches_are_length_bucketed_and_deterministic() -> None:
    lengths = [i % 37 + 1 for i in range(5000)]
    a = make_batches(lengths, 50, seed=1, epoch=0)
    assert a == make_batches(lengths, 50, seed=1, epoch=0)
    assert a != make_batches(lengths, 50, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(5000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a) / len(a)
    assert spread < 3  # sorted within chunks: a batch holds sentences of similar length


def test_concatenated_pairs_join_two_real_pairs_within_the_length_limit(tmp_path: Path) -> None:
    plain, _, meta = load_data(tiny(tmp_path))
    more, _, more_meta = load_data(tiny(tmp_path, concat_fraction=0.5, max_length=20))
    assert "concatenated_pairs" not in meta
    originals = [e for e in plain if len(e.src) <= 20 and len(e.tgt) <= 20]
    assert more[: len(originals)] == originals  # the corpus itself is kept, in order
    joined = more[len(originals) :]
    assert len(joined) == more_meta["concatenated_pairs"] > 0.4 * len(originals)
    by_source: dict[tuple[str, ...], list[Example]] = {}
    for e in originals:
        by_source.setdefault(e.src, []).append(e)
    for e in joined:
        assert len(e.src) <= 20 and len(e.tgt) <= 20
        # the example is one whole pair of the corpus followed by another
        assert any(
            a.tgt + b.tgt == e.tgt and f"{a.ref} {b.ref}" == e.ref
            for k in range(1, len(e.src))
            for a in by_source.get(e.src[:k], [])
            for b in by_source.get(e.src[k:], [])
        ), e
    assert concatenated(originals, 0.5, 3, 20) == joined  # seeded
    assert concatenated(originals, 0.5, 4, 20) != joined
    with pytest.raises(ValueError, match="concat_fraction"):
        tiny(tmp_path, concat_fraction=1.5)


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    # dropout on, so the restored RNG state matters too
    straight = tiny(tmp_path / "straight", dropout=0.2)
    train(straight, progress_bar=False)
    interrupted = tiny(tmp_path / "resumed", dropout=0.2, max_steps=6)
    first = train(interrupted, progress_bar=False)
    assert first.step == 6
    second = train(replace(interrupted, max_steps=12), resume=True, progress_bar=False)
    assert second.step == 12
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    card = json.loads((tmp_path / "resumed" / "card.json").read_text())
    assert [c["step"] for c in card["curve"]] == [6, 12]


def test_the_model_learns_and_the_card_describes_it(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "m", max_steps=40, valid_every=20, emb_dim=32, hidden_dim=32)
    progress = train(cfg, progress_bar=False)
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    losses = [c["loss"] for c in card["curve"]]
    assert losses[-1] < losses[0]
    assert card["source_lang"] == "en" and card["target_lang"] == "fr"
    assert card["data"]["corpus"]["seed"] == 1
    assert card["training_seconds"] > 0 and card["parameters"] > 0
    assert progress.best_bleu >= 0
    loaded = load_checkpoint(tmp_path / "m")
    assert loaded.model.config.attention == "additive"
    assert loaded.shortlist is not None  # built from the training pairs when training ends
    assert loaded.shortlist.info["data"] == str(SAMPLE)
    assert loaded.shortlist.info["pairs"] == card["data"]["train_pairs"]
    for name in ("model.safetensors", "card.json", "shortlist.safetensors"):  # service-readable
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o644


def test_corrupted_and_incompatible_checkpoints_are_refused(tmp_path: Path) -> None:
    train(tiny(tmp_path / "m", max_steps=6), progress_bar=False)
    folder = tmp_path / "m"
    weights_file = folder / "model.safetensors"
    good = weights_file.read_bytes()
    weights_file.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(folder)
    weights_file.write_bytes(good)
    shortlist_file = folder / "shortlist.safetensors"
    shortlist_file.write_bytes(shortlist_file.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"shortlist\.safetensors: not a readable"):
        load_checkpoint(folder)
    shortlist_file.unlink()
    assert load_checkpoint(folder).shortlist is None  # optional
    # a fresh run into the folder (other vocabularies) first removes the old shortlist, so
    # that its checkpoints load even if it is killed before it writes its own
    shortlist_file.write_bytes(b"an earlier run's")
    train(tiny(folder, max_steps=6, min_freq=2), progress_bar=False)
    loaded = load_checkpoint(folder)
    assert loaded.shortlist is not None and loaded.shortlist.per_source.size(0) == len(
        loaded.src_vocab
    )
    card = json.loads((folder / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**card, "version": 99}))
    with pytest.raises(CheckpointError, match=r"card\.json: version 99"):
        load_checkpoint(folder)
    cfg = {**card["config"], "hidden_dim": 32}
    (folder / "card.json").write_text(json.dumps({**card, "config": cfg}))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .* shape"):
        load_checkpoint(folder)
    (folder / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"card\.json: not valid JSON"):
        load_checkpoint(folder)
    (folder / "card.json").unlink()
    with pytest.raises(CheckpointError, match=r"card\.json: missing"):
        load_checkpoint(folder)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: data, out"):
        config_from_args({"data": "x", "out": "y", "lerning_rate": 1})
    with pytest.raises(ValueError, match="unknown attention"):
        train(TrainConfig(data=str(SAMPLE), out="/nonexistent", attention="psychic", max_steps=1))


def test_cli_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--data", str(SAMPLE), "--out", str(tmp_path / "m"), "--emb-dim", "8",
            "--hidden-dim", "8", "--max-steps", "3", "--valid-every", "3",
            "--valid-sentences", "5", "--attention", "dot", "--quiet",
            "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    assert "done: 3 steps" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "m").model.config.attention == "dot"
    assert main(["train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


def _train_cmd(out: Path, max_steps: int, *extra: str) -> list[str]:
    """`attnviz train` of tiny() as a command line (dropout on: the RNG state matters; no
    early stop, which a model this small could reach before the kill)."""
    return [
        sys.executable, "-m", "attnviz.app.cli", "train", "--data", str(SAMPLE),
        "--out", str(out), "--emb-dim", "16", "--hidden-dim", "16", "--batch-size", "16",
        "--valid-every", "6", "--valid-sentences", "20", "--max-steps", str(max_steps),
        "--dropout", "0.2", "--threads", "1", "--seed", "3", "--patience", "1000", "--quiet",
        *extra,
    ]  # fmt: skip


def test_a_killed_training_run_resumes_as_if_never_interrupted(tmp_path: Path) -> None:
    """SIGKILL at an arbitrary moment (mid-step, mid-validation or mid-save), then --resume:
    the run goes on from its last saved state and ends with the weights of a run that was
    never interrupted."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    pointer = killed / "train_state.json"
    proc = subprocess.Popen(
        _train_cmd(killed, 100_000), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not (pointer.is_file() and json.loads(pointer.read_text())["step"] >= 12):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no state saved at step 12 within 240 s"
            time.sleep(0.02)
        time.sleep(0.05)  # into the next steps
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads(pointer.read_text())["step"]
    assert saved % 6 == 0 and saved >= 12
    end = saved + 12  # six steps of it redone, then six beyond its last save
    resumed = subprocess.run(
        _train_cmd(killed, end, "--resume"), env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = subprocess.run(
        _train_cmd(tmp_path / "straight", end), env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert json.loads(pointer.read_text())["step"] == end
    a, b = weights(tmp_path / "straight"), weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert [p.name for p in killed.glob(".state-*")] == [
        json.loads(pointer.read_text())["folder"]
    ]  # what the kill left half-written is gone
    assert load_checkpoint(killed).model.config.hidden_dim == 16


# `attnviz train` that is killed (SIGKILL) at the moment the shortlist file would replace
# its temporary file: after the final state is saved, before the run's last step is done
_KILLED_BEFORE_THE_SHORTLIST = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith("shortlist.safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from attnviz.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_resume_finishes_a_run_killed_after_its_final_state(tmp_path: Path) -> None:
    """A kill -9 between the final state (done) and the shortlist: --resume writes the
    shortlist (the run's last step) and removes the temporary files kills leave."""
    out = tmp_path / "m"
    # patience 1: a tiny model's BLEU does not improve at its second validation, so the run
    # is done (early stop, not a budget) at step 2
    args = [*_train_cmd(out, 100)[3:], "--valid-every", "1", "--patience", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BEFORE_THE_SHORTLIST, *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    pointer = json.loads((out / "train_state.json").read_text())
    meta = json.loads((out / pointer["folder"] / "state.json").read_text())
    assert meta["progress"]["done"]  # the final state was saved ...
    assert not (out / "shortlist.safetensors").exists()  # ... the shortlist was not
    left = sorted(p.name for p in out.glob(".shortlist.safetensors.*.tmp"))
    assert len(left) == 1
    # what kills at other moments leave (atomic writes' temporary files, a state folder
    # being written)
    others = [".model.safetensors.a1b2.tmp", ".card.json.c3d4.tmp", ".train_state.json.e5.tmp",
              ".sentencepiece.en.model.f6.tmp"]  # fmt: skip
    for name in others:
        (out / name).write_bytes(b"half written")
    (out / ".state-9").mkdir()
    (out / "notes.tmp").write_text("not ours")  # not a temporary file of a write: kept

    assert main([*args, "--resume"]) == 0
    loaded = load_checkpoint(out)
    assert loaded.shortlist is not None
    assert (
        loaded.shortlist.info["pairs"]
        == json.loads((out / "card.json").read_text())["data"]["train_pairs"]
    )
    assert sorted(p.name for p in out.glob(".*.tmp")) == []
    assert [p.name for p in out.glob(".state-*")] == [pointer["folder"]]
    assert (out / "notes.tmp").exists()

    # a shortlist that is not the one the card names (a kill between writing it and its
    # checksum into the card, or damage): rebuilt on resume too
    (out / "shortlist.safetensors").write_bytes(b"not a shortlist")
    assert main([*args, "--resume"]) == 0
    assert load_checkpoint(out).shortlist is not None


def test_a_second_state_at_the_same_step_never_breaks_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a run saves the state of the step it last validated again (now done):
    a kill while that second state is written leaves the first one to resume from."""
    cfg = tiny(tmp_path / "m", max_steps=6)
    train(cfg, progress_bar=False)
    out = tmp_path / "m"
    flat, meta = load_state(out)
    from attnviz.model.factory import build_model
    from attnviz.model.vocab import Vocab

    src, tgt = Vocab(meta["src_vocab"]), Vocab(meta["tgt_vocab"])
    model = build_model(cfg.model_config(len(src), len(tgt)))
    opt = torch.optim.Adam(model.parameters())
    progress = Progress(**meta["progress"])

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed while writing the state")

    monkeypatch.setattr("attnviz.model.train.save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_state(out, model, opt, progress, cfg, src, tgt)
    again, meta_again = load_state(out)  # the state the pointer names is whole
    assert meta_again == meta and again.keys() == flat.keys()


def test_checksums_catch_flipped_bits_that_leave_the_numbers_finite(tmp_path: Path) -> None:
    """The card records each tensor file's sha256 when it is written, and loading checks
    it: one flipped mantissa bit (a finite weight, a valid shortlist id) is refused by
    name. A card without checksums (written before them: the bundled ones) still loads."""
    folder = tmp_path / "m"
    train(tiny(folder, max_steps=6), progress_bar=False)
    card = json.loads((folder / "card.json").read_text())
    assert set(card["sha256"]) == {"model.safetensors", "shortlist.safetensors"}
    load_checkpoint(folder)

    weights_file = folder / "model.safetensors"
    good = weights_file.read_bytes()
    flipped = bytearray(good)
    flipped[8 + int.from_bytes(good[:8], "little")] ^= 1  # the low mantissa bit of a weight
    weights_file.write_bytes(bytes(flipped))
    before = load_file(weights_file)
    assert all(torch.isfinite(t).all() for t in before.values() if t.is_floating_point())
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 .* differs"):
        load_checkpoint(folder)
    weights_file.write_bytes(good)

    shortlist_file = folder / "shortlist.safetensors"
    good_list = shortlist_file.read_bytes()
    start = 8 + int.from_bytes(good_list[:8], "little")
    loaded = load_checkpoint(folder)
    assert loaded.shortlist is not None
    for offset in range(start, len(good_list), 2):  # the first flip the file's checks accept
        damaged = bytearray(good_list)
        damaged[offset] ^= 1
        shortlist_file.write_bytes(bytes(damaged))
        try:
            load_shortlist(folder, len(loaded.src_vocab), len(loaded.tgt_vocab),
                           loaded.shortlist.vocab)  # fmt: skip
        except ValueError:
            continue
        break
    with pytest.raises(CheckpointError, match=r"shortlist\.safetensors: sha256 .* differs"):
        load_checkpoint(folder)
    # the service loads such a model without its optional file, saying why
    served = load_checkpoint(folder, skip_broken_optional=True)
    assert served.shortlist is None
    [warning] = served.warnings
    assert "shortlist.safetensors" in warning and "without its shortlist" in warning
    assert load_checkpoint(folder, skip_broken_optional=True).model is not None

    old = {k: v for k, v in card.items() if k != "sha256"}  # a card from before checksums
    (folder / "card.json").write_text(json.dumps(old))
    weights_file.write_bytes(bytes(flipped))
    assert load_checkpoint(folder).shortlist is not None


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    """2 ranks x 1 batch each == 1 process accumulating the same 2 batches."""
    one = tiny(tmp_path / "one", accumulate=2, max_steps=4, valid_every=4)
    train(one, progress_bar=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_port=29533", "-m", "attnviz.app.cli", "train", "--data", str(SAMPLE),
        "--out", str(tmp_path / "two"), "--emb-dim", "16", "--hidden-dim", "16",
        "--batch-size", "16", "--valid-every", "4", "--valid-sentences", "20",
        "--max-steps", "4", "--dropout", "0.0", "--threads", "1", "--seed", "3", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    card_one = json.loads((tmp_path / "one" / "card.json").read_text())
    card_two = json.loads((tmp_path / "two" / "card.json").read_text())
    assert card_one["curve"][-1]["loss"] == pytest.approx(card_two["curve"][-1]["loss"], abs=1e-4)


def test_hard_attention_moves_from_soft_to_one_hot_over_the_anneal_steps(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="attention_anneal_steps"):
        tiny(tmp_path / "x", attention_anneal_steps=-1)
    cfg = tiny(tmp_path / "m", attention="hard", attention_anneal_steps=10)
    assert [anneal_progress(cfg, s) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]
    assert anneal_progress(replace(cfg, attention_anneal_steps=0), 0) == 1.0  # no schedule
    # at mix 0 (the first step) the hard model's training pass is soft `general` attention:
    # one step from the same seed gives the same weights; without the ramp it does not
    one_step = {"max_steps": 1, "valid_every": 1}
    weights = {}
    for name, kw in {
        "general": {"attention": "general"},
        "annealed": {"attention": "hard", "attention_anneal_steps": 1000},
        "one-hot": {"attention": "hard"},
    }.items():
        train(tiny(tmp_path / name, **one_step, **kw), progress_bar=False)
        weights[name] = load_file(str(tmp_path / name / "model.safetensors"))
    assert weights["general"].keys() == weights["annealed"].keys()
    for key, value in weights["general"].items():
        torch.testing.assert_close(weights["annealed"][key], value, msg=key)
    assert any(not torch.equal(weights["one-hot"][k], v) for k, v in weights["general"].items())


def test_the_anneal_advances_and_holds_off_plateaus_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attnviz.model.attention import HardAttention

    seen: list[float] = []
    original = HardAttention.anneal

    def spy(self: HardAttention, progress: float) -> None:
        seen.append(progress)
        original(self, progress)

    monkeypatch.setattr(HardAttention, "anneal", spy)
    # a tiny model's validation BLEU stays at its first value for these steps; with
    # patience 1 that stops a run at once, but not while the attention still anneals
    # (eval mode is not yet what training optimises)
    kw: dict[str, object] = {"attention": "hard", "valid_every": 1, "max_steps": 8, "patience": 1}
    plain = train(tiny(tmp_path / "plain", **kw), progress_bar=False)
    assert plain.done and plain.step == 2 and set(seen) == {1.0}  # improved once, then not
    seen.clear()
    annealed = train(
        tiny(tmp_path / "annealed", attention_anneal_steps=4, **kw), progress_bar=False
    )
    assert seen == [0.0, 0.25, 0.5, 0.75]  # one call a step, before it
    assert annealed.done and annealed.step == 4  # the first plateau counted: the anneal's end
    assert [p["valid_bleu"] for p in annealed.curve] == [annealed.curve[0]["valid_bleu"]] * 4


def test_linear_schedule_needs_a_step_budget_and_decays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max-steps"):
        tiny(tmp_path / "x", lr_schedule="linear", max_steps=0)
    with pytest.raises(ValueError, match=r"valid: .*plateau"):
        tiny(tmp_path / "x", lr_schedule="cosine")
    cfg = tiny(tmp_path / "m", lr_schedule="linear", max_steps=1000, warmup_steps=100, lr=1.0)
    lrs = [learning_rate(cfg, s) for s in range(1000)]
    assert lrs[0] == pytest.approx(0.01) and lrs[99] == pytest.approx(1.0)
    assert all(a >= b for a, b in pairwise(lrs[99:]))
    assert learning_rate(cfg, 1000) == pytest.approx(0.05)
    plateau = replace(cfg, lr_schedule="plateau")
    assert learning_rate(plateau, 500, plateau_scale=0.5) == pytest.approx(0.5)
    short = replace(cfg, max_steps=8, valid_every=8, warmup_steps=2, lr=2e-3)
    assert train(short, progress_bar=False).step == 8
