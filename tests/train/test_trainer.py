import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geomreg.train.cli_cmd import train_command
from geomreg.train.config import TrainConfig
from geomreg.train.trainer import restore, train

TINY = dict(crop_size=64, batch_size=2, val_size=64, val_pairs_per_modality=1, val_every_steps=2, log_every_steps=1, warmup_steps=1, val_fraction=0.5)


def test_train_resumes_from_checkpoint(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    train(tiny_dataset, out, TrainConfig(max_steps=2, **TINY), progress=False)
    state, cfg = restore(out / "last.pt", "cpu")
    assert state.step == 2 and cfg.crop_size == 64
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    train(tiny_dataset, out, TrainConfig(max_steps=3, **TINY), resume=out / "last.pt", progress=False)
    state2, _ = restore(out / "last.pt", "cpu")
    assert state2.step == 3
    assert any(not torch.equal(before[k], v) for k, v in state2.model.state_dict().items())
    assert len(state2.history) == 2  # two legs recorded
    lines = (out / "train_log.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and len(lines) == 4
    assert (out / "best.pt").exists() and (out / "split.txt").exists()


def test_train_cli_runs_and_reports(tiny_dataset, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(dict(max_steps=1, **TINY)))
    r = CliRunner().invoke(train_command, ["--data", str(tiny_dataset), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert '"score"' in r.output


def test_train_cli_bad_dataset_exit_2(tmp_path):
    (tmp_path / "MANIFEST.csv").write_text("pair_id,modality,ref_path,mov_path,aligned,gt\nx,opt-sar,a.jpg,b.jpg,no,H_mov_to_ref.txt\n")
    r = CliRunner().invoke(train_command, ["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--max-steps", "1"])
    assert r.exit_code == 2
    assert "pair x" in r.output


def test_malformed_matrix_names_the_pair(tiny_dataset):
    from geomreg.data.manifest import DatasetError, load_pair, read_manifest

    rec = read_manifest(tiny_dataset)[0]
    rec.h_path.write_text("1 2\n3 4\n")
    with pytest.raises(DatasetError, match="pair p0: malformed|pair p0: .* not a finite"):
        load_pair(rec)


def test_sigterm_stops_after_the_step_with_a_checkpoint(tiny_dataset, tmp_path):
    import os
    import signal
    import threading

    out = tmp_path / "run"
    timer = threading.Timer(8.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        res = train(tiny_dataset, out, TrainConfig(max_steps=10_000, **TINY), progress=False)
    finally:
        timer.cancel()
    assert res is None
    state, _ = restore(out / "last.pt", "cpu")
    assert 0 < state.step < 10_000


def test_train_continues_from_weights_only(tiny_dataset, tmp_path):
    from geomreg.matching.weights import export_packaged, load_checkpoint

    out = tmp_path / "run"
    train(tiny_dataset, out, TrainConfig(max_steps=1, **TINY), progress=False)
    model = load_checkpoint(out / "last.pt")
    export_packaged(model, {"steps": 1}, tmp_path)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(dict(max_steps=1, **TINY)))
    r = CliRunner().invoke(
        train_command,
        ["--data", str(tiny_dataset), "--out", str(tmp_path / "o2"), "--config", str(cfg), "--init-weights", str(tmp_path / "regnetmamba2.pt")],
    )
    assert r.exit_code == 0, r.output
    state, _ = restore(tmp_path / "o2" / "last.pt", "cpu")
    assert state.step == 1


@pytest.mark.parametrize("same_validation_set", [True, False])
def test_best_score_is_kept_only_on_the_same_validation_set(tiny_dataset, tmp_path, same_validation_set):
    out = tmp_path / "run"
    train(tiny_dataset, out, TrainConfig(max_steps=2, **TINY), progress=False)
    ck = torch.load(out / "last.pt", weights_only=True)
    assert len(ck["val_fingerprint"]) == 16
    # A best score no validation can reach: kept, it blocks best.pt; from another validation set it must not.
    ck["best_score"] = 5.0
    if not same_validation_set:
        ck["val_fingerprint"] = "measured-elsewhere"
    torch.save(ck, out / "resume.pt")
    (out / "best.pt").unlink()
    train(tiny_dataset, out, TrainConfig(max_steps=4, **TINY), resume=out / "resume.pt", progress=False)
    assert (out / "best.pt").exists() is not same_validation_set
    state, _ = restore(out / "last.pt", "cpu")
    assert (state.best_score == 5.0) is same_validation_set


def test_learning_rate_anneals_over_the_time_budget():
    from geomreg.train.trainer import _lr

    cfg = TrainConfig(lr=1e-3, warmup_steps=10, max_minutes=10.0, lr_anneal_to=0.1)
    assert _lr(cfg, 0, 0.0) == pytest.approx(1e-4)  # warm-up still applies
    assert _lr(cfg, 100, 0.0) == pytest.approx(1e-3)
    assert _lr(cfg, 100, 5.0) == pytest.approx(5.5e-4)
    assert _lr(cfg, 100, 10.0) == pytest.approx(1e-4)
    assert _lr(cfg, 100, 20.0) == pytest.approx(1e-4)  # never below the floor
    constant = TrainConfig(lr=1e-3, warmup_steps=10, max_minutes=10.0)
    assert _lr(constant, 100, 9.0) == pytest.approx(1e-3)


def test_keep_validated_writes_a_checkpoint_per_validation(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(max_steps=2, **{**TINY, "val_every_steps": 1}, keep_validated=True)
    train(tiny_dataset, out, cfg, progress=False)
    kept = sorted(p.name for p in out.glob("step_*.pt"))
    assert kept == ["step_000001.pt", "step_000002.pt"]
    state, _ = restore(out / "step_000001.pt", "cpu")
    assert state.step == 1


def test_train_validates_on_whole_images(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    # val_fraction 0.75 puts p1 (sha1 bucket 0.72) in validation; TINY's 0.5 leaves the split empty
    cfg = TrainConfig(max_steps=2, **{**TINY, "val_fraction": 0.75}, val_protocol="whole", val_threshold=0.05)
    res = train(tiny_dataset, out, cfg, progress=False)
    assert res is not None and res.metrics["all/n"] >= 1
    # The score is the mean success at 3, 5 and 10 px; two steps from random weights register nothing (0.0 measured
    # on 2026-12-06 at commit 3053c82; tests/train/test_whole_validation.py shows trained weights scoring 1.0 here).
    assert res.score == pytest.approx(np.mean([res.metrics[f"all/success@{t}"] for t in (3, 5, 10)])) and res.score <= 0.2
    header, row = (out / "val_log.csv").read_text().splitlines()[:2]
    assert "all/success@3" in header and row.startswith("2,")
    assert (out / "best.pt").exists()
    with pytest.raises(ValueError, match="validation pairs"):
        train(tiny_dataset, tmp_path / "empty", TrainConfig(max_steps=1, **TINY, val_protocol="whole"), progress=False)


def test_unknown_validation_protocol_is_refused(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="val_protocol"):
        train(tiny_dataset, tmp_path / "run", TrainConfig(max_steps=1, **TINY, val_protocol="tiles"), progress=False)


def test_self_pairs_carry_full_fine_weight_and_real_pairs_the_configured_one(tiny_dataset):
    import numpy as np

    from geomreg.data.manifest import read_manifest
    from geomreg.train.config import TrainConfig
    from geomreg.train.pairs import cache_pair
    from geomreg.train.trainer import sample_batch, to_tensors

    pairs = [cache_pair(r) for r in read_manifest(tiny_dataset)]
    w = np.full(len(pairs), 1.0 / len(pairs))
    for prob, expected in ((1.0, 1.0), (0.0, 0.25)):
        cfg = TrainConfig(crop_size=32, batch_size=3, self_pair_prob=prob, real_fine_weight=0.25)
        batch = sample_batch(pairs, w, cfg, 0, np.random.default_rng(0))
        assert all(i.exact == (prob == 1.0) for i in batch)
        fine_w = to_tensors(batch, "cpu", cfg.real_fine_weight)[-1]
        assert fine_w.tolist() == [expected] * 3


def test_audited_pairs_carry_full_fine_weight(tiny_dataset):
    from dataclasses import replace

    import numpy as np

    from geomreg.data.manifest import read_manifest
    from geomreg.train.config import TrainConfig
    from geomreg.train.pairs import cache_pair
    from geomreg.train.trainer import sample_batch, to_tensors

    recs = read_manifest(tiny_dataset)
    audited = [replace(r, h_fixed=tuple(np.loadtxt(r.h_path, comments="#").ravel())) for r in recs]
    pairs = [cache_pair(r) for r in audited]
    cfg = TrainConfig(crop_size=32, batch_size=3, self_pair_prob=0.0, real_fine_weight=0.25)
    batch = sample_batch(pairs, np.full(len(pairs), 1.0 / len(pairs)), cfg, 0, np.random.default_rng(0))
    assert all(i.audited and not i.exact for i in batch)
    assert to_tensors(batch, "cpu", cfg.real_fine_weight)[-1].tolist() == [1.0] * 3


def test_training_reads_audited_ground_truth(tiny_dataset, tmp_path):
    import csv

    from geomreg.data.manifest import GT_FIX_COLUMNS, read_manifest

    recs = read_manifest(tiny_dataset)
    dropped = recs[0].pair_id
    with (tmp_path / "fixes.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=GT_FIX_COLUMNS)
        w.writeheader()
        w.writerow({"pair_id": dropped, "verdict": "unverified", **{c: "" for c in GT_FIX_COLUMNS[2:]}})
    train(tiny_dataset, tmp_path / "run", TrainConfig(max_steps=1, **TINY, gt_fixes=str(tmp_path / "fixes.csv")), progress=False)
    split = (tmp_path / "run" / "split.txt").read_text()
    assert dropped not in split and recs[1].pair_id in split


def test_guided_fine_training_puts_true_positions_anywhere_in_the_window():
    """Jittered windows (as guided matching centres them) reach offsets anchor-centred ones never show."""
    from geomreg.matching.model import RegNetMamba2, fine_to_pixel
    from geomreg.train.targets import coarse_targets, offsets_from, true_positions_in_b

    torch.manual_seed(0)
    model = RegNetMamba2().eval()
    model.set_fine_window(7)
    img = torch.rand(1, 1, 96, 96)
    valid = torch.ones_like(img, dtype=torch.bool)
    H = torch.tensor([[[1.0, 0.0, 2.6], [0.0, 1.0, -1.3], [0.0, 0.0, 1.0]]])
    gt = coarse_targets(H, valid, valid, (12, 12))
    with torch.no_grad():
        out = model(img, img, valid, valid)
        true_b = true_positions_in_b(H, gt.batch, gt.idx_a, 12)
        jitter = (torch.rand(true_b.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 5.0
        fine, centre = model.fine_around(out.features, 12, gt.batch, gt.idx_a, true_b + jitter)
    off = offsets_from(centre, true_b)
    torch.testing.assert_close(fine_to_pixel(centre.float()) + 2 * off, true_b)
    assert fine.offset.shape == off.shape and off.abs().max() <= 3.0  # every target inside the 7 x 7 window
    assert (off.abs() > 2.0).any()  # ... and some beyond the +-2 fine px anchor-centred windows leave them in


def test_guided_fine_term_trains_and_is_logged(tiny_dataset, tmp_path):
    import csv

    out = tmp_path / "run"
    train(tiny_dataset, out, TrainConfig(max_steps=2, **TINY, guided_fine_weight=1.0, self_pair_prob=1.0), progress=False)
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert len(rows) == 2 and all(float(r["guided_fine"]) >= 0.0 for r in rows)


def test_trainable_stages_train_and_the_rest_stay_frozen(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    train(tiny_dataset, out, TrainConfig(max_steps=1, **TINY), progress=False)
    before = restore(out / "last.pt", "cpu")[0].model.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    train(tiny_dataset, tmp_path / "tuned", TrainConfig(max_steps=2, **TINY, trainable=("msf", "fine")), init_weights=out / "last.pt", progress=False)
    after = restore(tmp_path / "tuned" / "last.pt", "cpu")[0].model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"msf", "fine"}  # the coarse matches are the starting weights' own


def test_unknown_trainable_stage_is_refused(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        train(tiny_dataset, tmp_path / "run", TrainConfig(max_steps=1, **TINY, trainable=("decoder",)), progress=False)


@pytest.mark.parametrize("path", sorted((__import__("pathlib").Path(__file__).parents[2] / "geomreg" / "train").glob("configs_*.json")), ids=lambda p: p.name)
def test_packaged_training_configs_are_valid(path):
    # the configs docs/training.md and the model card point to must load as they are (no stale or misspelt field)
    cfg = TrainConfig.from_dict(json.loads(path.read_text()), strict=True)
    assert cfg.lr > 0 and cfg.batch_size >= 1


@pytest.mark.parametrize(
    "text, message",
    [('{"learning_rate": 1e-4}', "unknown training setting(s) learning_rate"), ('{"lr": ', "not valid JSON"), ("[1, 2]", "expected an object")],
)
def test_train_cli_refuses_a_bad_config_naming_the_file(tiny_dataset, tmp_path, text, message):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    r = CliRunner().invoke(train_command, ["--data", str(tiny_dataset), "--out", str(tmp_path / "out"), "--config", str(cfg)])
    assert r.exit_code == 2
    assert message in r.output and str(cfg) in r.output
    assert not (tmp_path / "out" / "last.pt").exists()


def test_train_cli_resume_reads_the_checkpoint_once_and_keeps_its_config(tiny_dataset, tmp_path, monkeypatch):
    import geomreg.train.trainer as trainer

    out = tmp_path / "run"
    train(tiny_dataset, out, TrainConfig(max_steps=1, **TINY), progress=False)
    reads = []
    real = trainer.read_checkpoint
    monkeypatch.setattr(trainer, "read_checkpoint", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    r = CliRunner().invoke(train_command, ["--data", str(tiny_dataset), "--out", str(out), "--resume", str(out / "last.pt"), "--max-steps", "2"])
    assert r.exit_code == 0, r.output
    assert reads == [out / "last.pt"]
    state, cfg = restore(out / "last.pt", "cpu")
    assert state.step == 2 and cfg.crop_size == 64 and cfg.max_steps == 2  # the checkpoint's config, the CLI's limit


def test_train_overrides_refuse_unknown_fields(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown training setting"):
        train(tiny_dataset, tmp_path / "o", TrainConfig(max_steps=1, **TINY), overrides={"max_stepz": 1}, progress=False)
