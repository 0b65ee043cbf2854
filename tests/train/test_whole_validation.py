import torch

from geomreg.data.manifest import read_manifest
from geomreg.matching.model import RegNetMamba2
from geomreg.train.whole_validation import build_whole_validation


def test_whole_image_validation_scores_every_modality(tiny_dataset):
    records = read_manifest(tiny_dataset)
    val = build_whole_validation(records, per_modality=1, threshold=0.05)
    assert len(val.instances) == 2 and val.modalities == {"opt-sar", "vis-ir"}
    model = RegNetMamba2().train()
    res = val.run(model, torch.device("cpu"))
    assert 0.0 <= res.score <= 1.0
    assert res.metrics["all/n"] == 2 and {"vis-ir/success@3", "opt-sar/ncm", "all/matches"} <= res.metrics.keys()
    assert model.training and model.cfg.coarse.threshold != 0.05  # the training model is left as it was


def test_whole_image_validation_fingerprint_follows_instances_and_threshold(tiny_dataset):
    records = read_manifest(tiny_dataset)
    a = build_whole_validation(records, 1, 0.05)
    assert a.fingerprint() == build_whole_validation(records, 1, 0.05).fingerprint()
    assert a.fingerprint() != build_whole_validation(records, 1, 0.1).fingerprint()
    assert a.fingerprint() != build_whole_validation(records, 2, 0.05).fingerprint()
