import json

import pytest
import torch
from click.testing import CliRunner

from geomreg.matching.config import EncoderConfig, RegNetMamba2Config
from geomreg.matching.model import RegNetMamba2
from geomreg.train.cli_cmd import train_command
from geomreg.train.trainer import restore
from geomreg.train.warm_start import grow_from, merge_config, slim_from, warm_start_from

from .test_trainer import TINY

FULL = RegNetMamba2Config(encoder=EncoderConfig(self_blocks=(1, 1, 1), cmi_layers=(1, 1, 2), cmi_self=(False, False, True)))


def test_merge_config_changes_only_the_named_fields():
    slim = merge_config(FULL, {"encoder": {"self_blocks": [0, 0, 1]}, "coarse": {"threshold": 0.05}})
    assert slim.encoder.self_blocks == (0, 0, 1)
    assert slim.encoder.cmi_layers == (1, 1, 2) and slim.encoder.cmi_self == (False, False, True)
    assert slim.coarse.threshold == 0.05 and slim.fine == FULL.fine


@pytest.mark.parametrize("overrides", [{"encoder": {"self_block": [0, 0, 1]}}, {"decoder": {}}, {"encoder": [0]}])
def test_merge_config_rejects_unknown_names(overrides):
    with pytest.raises(ValueError, match="unknown"):
        merge_config(FULL, overrides)


def test_slim_from_copies_every_kept_weight_and_names_the_dropped_ones():
    torch.manual_seed(0)
    source = RegNetMamba2(FULL)
    slim, dropped = slim_from(source, merge_config(FULL, {"encoder": {"self_blocks": [0, 0, 1], "cmi_self": [False] * 3}}))
    src = source.state_dict()
    assert all(torch.equal(v, src[k]) for k, v in slim.state_dict().items())
    assert any(k.startswith("encoder.stage2.blocks.0.") for k in dropped)
    assert any(".self_block." in k for k in dropped) and not any(k.startswith("encoder.stage8.") for k in dropped)
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in source.parameters())


def test_slim_from_refuses_a_design_that_is_not_a_sub_network():
    source = RegNetMamba2(merge_config(FULL, {"encoder": {"self_blocks": [0, 0, 1]}}))
    with pytest.raises(ValueError, match="not a sub-network"):
        slim_from(source, FULL)  # the 1/2 and 1/4 self blocks would start random


def test_grow_from_keeps_every_weight_and_computes_what_the_source_computed():
    torch.manual_seed(0)
    source = RegNetMamba2(FULL).eval()
    deeper = merge_config(FULL, {"encoder": {"cmi_layers": [1, 1, 3], "self_blocks": [1, 1, 2]}})
    grown, added = grow_from(source, deeper)
    assert sorted(added) == ["cmi.scales.2.layers.2.cross_block", "cmi.scales.2.layers.2.self_block", "encoder.stage8.blocks.1"]
    grown.eval()
    src = source.state_dict()
    assert all(torch.equal(v, grown.state_dict()[k]) for k, v in src.items())
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = source(x, x.flip(-1)), grown(x, x.flip(-1))
    assert torch.equal(a.coarse.matches.idx_b, b.coarse.matches.idx_b)
    assert torch.allclose(a.matches.xy_b, b.matches.xy_b) and torch.allclose(a.features.coarse_a, b.features.coarse_a)
    # the new blocks are not dead: their zeroed output layers get a gradient at once
    grown.train()
    out = grown(x, x.flip(-1))
    out.features.coarse_a.square().sum().backward()
    assert grown.get_submodule("cmi.scales.2.layers.2.cross_block").mixer.out_proj.weight.grad.abs().sum() > 0


def test_warm_start_picks_slimming_or_growing_and_refuses_a_mixture():
    source = RegNetMamba2(merge_config(FULL, {"encoder": {"self_blocks": [0, 0, 1]}}))
    _, record = warm_start_from(source, FULL)  # the 1/2 and 1/4 self blocks are added as identities
    assert record["added_blocks"] == ["encoder.stage2.blocks.0", "encoder.stage4.blocks.0"]
    _, record = warm_start_from(RegNetMamba2(FULL), merge_config(FULL, {"encoder": {"self_blocks": [0, 0, 1]}}))
    assert record["dropped_entries"] > 0
    mixed = merge_config(FULL, {"encoder": {"self_blocks": [1, 1, 1], "cmi_self": [False] * 3}})
    with pytest.raises(ValueError, match="neither"):
        warm_start_from(source, mixed)
    with pytest.raises(ValueError, match="shape differs"):
        grow_from(source, merge_config(FULL, {"fine": {"dim": 64}}))


def test_train_cli_warm_starts_a_slimmer_design(tiny_dataset, tmp_path):
    from geomreg.train.trainer import train
    from geomreg.train.config import TrainConfig

    train(tiny_dataset, tmp_path / "full", TrainConfig(max_steps=1, **TINY), model_config=FULL, progress=False)
    cfg, overrides = tmp_path / "cfg.json", tmp_path / "model.json"
    cfg.write_text(json.dumps(dict(max_steps=2, **TINY)))
    overrides.write_text(json.dumps({"encoder": {"self_blocks": [0, 0, 1]}}))
    args = ["--data", str(tiny_dataset), "--out", str(tmp_path / "slim"), "--config", str(cfg)]
    r = CliRunner().invoke(train_command, [*args, "--init-weights", str(tmp_path / "full" / "last.pt"), "--model-config", str(overrides)])
    assert r.exit_code == 0, r.output
    state, _ = restore(tmp_path / "slim" / "last.pt", "cpu")
    assert state.model.cfg.encoder.self_blocks == (0, 0, 1) and state.step == 2  # continues the source's step count
    assert any("slimmed" in leg for leg in state.history)
    # a resumed run keeps its design; a malformed override file is a clear exit 2
    r = CliRunner().invoke(train_command, [*args, "--resume", str(tmp_path / "slim" / "last.pt"), "--model-config", str(overrides)])
    assert r.exit_code == 2 and "keeps its design" in r.output
    overrides.write_text("[1, 2]")
    r = CliRunner().invoke(train_command, [*args, "--model-config", str(overrides)])
    assert r.exit_code == 2 and "JSON object" in r.output


def test_distillation_teaches_the_teachers_features(tiny_dataset, tmp_path):
    from geomreg.train.config import TrainConfig
    from geomreg.train.losses import distillation_loss
    from geomreg.train.trainer import train

    torch.manual_seed(0)
    teacher = RegNetMamba2(FULL).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        feats = teacher(x, x.flip(-1)).features
    assert distillation_loss(feats, feats).item() == 0.0
    student, _ = slim_from(teacher, merge_config(FULL, {"encoder": {"self_blocks": [0, 0, 1]}}))
    with torch.no_grad():
        assert distillation_loss(student(x, x.flip(-1)).features, feats).item() > 0.0  # the dropped blocks mattered

    train(tiny_dataset, tmp_path / "full", TrainConfig(max_steps=1, **TINY), model_config=FULL, progress=False)
    cfg = TrainConfig(max_steps=3, distill_from=str(tmp_path / "full" / "last.pt"), distill_match_weight=0.5, **TINY)
    train(tiny_dataset, tmp_path / "slim", cfg, init_weights=tmp_path / "full" / "last.pt",
          model_overrides={"encoder": {"self_blocks": [0, 0, 1]}}, progress=False)
    rows = (tmp_path / "slim" / "train_log.csv").read_text().splitlines()
    assert rows[0].endswith(",distill,distill_match")
    for row in rows[1:]:
        distill, match = (float(v) for v in row.split(",")[-2:])
        assert match > 0 and distill > 0.5 * match  # the total holds the weighted match term
