"""Export a validated training checkpoint as the packaged weights, with its model card.

    .venv/bin/python scripts/export_weights.py runs/cpu1/best.pt --notes docs/model_card_notes.md
    .venv/bin/python scripts/export_weights.py --card-only      # the card again, from the packaged weights' card

Writes geomreg/weights/regnetmamba2.pt (fp16 state_dict), regnetmamba2.json (config, sha256, provenance,
validation metrics) and docs/MODEL_CARD.md. Numbers come from the checkpoint's own validation record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch

from geomreg.matching.weights import PACKAGED_DIR, export_packaged, is_training_checkpoint, model_from_checkpoint, read_checkpoint

REPO = Path(__file__).resolve().parent.parent
CARD_MD = REPO / "docs" / "MODEL_CARD.md"
NOTES = REPO / "docs" / "model_card_notes.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", type=Path, nargs="?")
    ap.add_argument("--command", default="geomreg train --data ../shared/data/train --out runs/cpu1 --config geomreg/train/configs_cpu.json")
    ap.add_argument("--data", type=Path, help="dataset directory: tune the coarse threshold on its validation split")
    ap.add_argument("--thresholds", default="0.05,0.1,0.2", help="coarse thresholds tried on validation")
    ap.add_argument("--notes", type=Path, help="markdown appended to docs/MODEL_CARD.md (results beyond validation, training "
                    "history; normally docs/model_card_notes.md)")
    ap.add_argument("--card-only", action="store_true",
                    help="rewrite docs/MODEL_CARD.md from the packaged weights' card and --notes (default "
                    "docs/model_card_notes.md) without exporting anything")
    ap.add_argument("--tune-on", choices=("whole", "crops"), default="whole",
                    help="whole: the accuracy benchmark's protocol on whole validation images through the Matcher "
                    "(what users run; default); crops: training's 256 px validation crops")
    ap.add_argument("--max-pairs", type=int, default=10, help="validation pairs per modality for --tune-on whole")
    ap.add_argument("--warp-seeds", default="0", help="comma-separated seeds of the validation warps for --tune-on whole, "
                    "e.g. 0,1: one warp per pair and seed (one seed's score moves by about 0.03 with the draw)")
    ap.add_argument("--gt-fixes", type=Path, help="audited ground truth (scripts/audit_ground_truth.py) for the validation pairs")
    ap.add_argument("--chunk-sizes", help="SSD chunk lengths per scale for inference, e.g. 8,16,32 (benchmarks/ssd_chunks.py "
                    "measures the fastest; a speed setting: the weights and the results do not depend on it)")
    ap.add_argument("--fine-window", type=int, help="fine window side at inference (odd; the weights read any: "
                    "RegNetMamba2.set_fine_window)")
    ap.add_argument("--guide-threshold", type=float,
                    help="score with guided matching's model threshold at this many px instead of the Matcher's default "
                    "(GuideConfig.threshold_px; an inference setting, compared on validation before it changes)")
    ap.add_argument("--score-only", action="store_true",
                    help="print the validation scores at --thresholds and stop: compare candidate checkpoints without exporting")
    args = ap.parse_args()
    if args.card_only:
        # The card again from the packaged weights' own card and the notes: no checkpoint is read.
        write_card_markdown(json.loads((PACKAGED_DIR / "regnetmamba2.json").read_text()), CARD_MD,
                            (args.notes or NOTES).read_text())
        print(f"wrote {CARD_MD}")
        return
    if args.checkpoint is None:
        ap.error("a checkpoint is needed (or --card-only)")
    if args.score_only and args.data is None:
        ap.error("--score-only needs --data")
    ck = read_checkpoint(args.checkpoint)
    if not is_training_checkpoint(ck) and not (args.score_only and args.tune_on == "whole"):
        ap.error(f"{args.checkpoint}: exporting needs a training checkpoint; packaged weights can only be scored (--score-only)")
    model = model_from_checkpoint(ck, args.checkpoint)  # packaged weights take their config from the .json beside them
    if args.chunk_sizes:
        model.set_chunk_sizes(tuple(int(c) for c in args.chunk_sizes.split(",")))
    if args.fine_window:
        model.set_fine_window(args.fine_window)
    tuning = None
    if args.data is not None:
        thresholds = [float(t) for t in args.thresholds.split(",")]
        if args.tune_on == "whole":
            seeds = tuple(int(x) for x in args.warp_seeds.split(","))
            model, tuning = tune_threshold_whole(model, args.data, thresholds, args.max_pairs, args.gt_fixes, seeds, _matcher_config(args))
        else:
            model, tuning = tune_threshold(model, ck, args.data, thresholds)
        if args.score_only:
            return
        ck["validation"] = tuning["best_metrics"]
    card = {
        "model": "RegNetMamba-2 (geomreg's own implementation and training; not the paper's weights)",
        "exported": dt.date.today().isoformat(),
        "steps": ck["step"],
        "training_legs": ck.get("history", []),
        "train_config": ck["train_config"],
        "command": args.command,
        "data": "../shared/data/train (1,498 research-use pairs; split by sha1(pair_id), 10 % validation; see split in the run directory)",
        "validation": ck.get("validation", {}),
        "validation_protocol": WHOLE_PROTOCOL.format(n=args.max_pairs, seeds=args.warp_seeds) if args.data is not None and args.tune_on == "whole" else CROPS_PROTOCOL,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threshold_tuning": None if tuning is None else {k: v for k, v in tuning.items() if k != "best_metrics"},
    }
    weights = export_packaged(model, card, PACKAGED_DIR)
    write_card_markdown(json.loads((PACKAGED_DIR / "regnetmamba2.json").read_text()), CARD_MD,
                        None if args.notes is None else args.notes.read_text())
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB)")


CROPS_PROTOCOL = "seeded warps (rotation +-10 deg, scale +-10 %, translation +-8 %, mild perspective) of 256x256 crops of the validation pairs; MAGSAC 3 px; grid RMSE"
WHOLE_PROTOCOL = ("benchmarks/accuracy.py's warped protocol on whole validation images ({n} pairs per modality, warp seeds {seeds}) "
                  "through geomreg.Matcher; MAGSAC 3 px; grid RMSE")


def _matcher_config(args):
    """The Matcher's defaults, or them with --guide-threshold; None when no option changes them."""
    if args.guide_threshold is None:
        return None
    from dataclasses import replace

    from geomreg.matching.api import MatcherConfig

    defaults = MatcherConfig()
    return replace(defaults, guide=replace(defaults.guide, threshold_px=args.guide_threshold))


def tune_threshold_whole(model, data: Path, thresholds: list[float], max_pairs: int, gt_fixes: Path | None = None,
                         warp_seeds: tuple[int, ...] = (0,), matcher_config=None):
    """Pick the coarse threshold on whole validation images, as users (and the accuracy benchmark) run them.

    The dual-softmax probabilities shrink as grids grow, so a threshold chosen on 256 px crops can starve
    whole images of matches (measured: 89 against 442 matches per pair, success@10 0.46 against 0.61).
    """
    from dataclasses import replace

    from geomreg.data.manifest import read_dataset, split_pairs
    from geomreg.train.whole_validation import build_whole_validation

    val = replace(build_whole_validation(split_pairs(read_dataset(data, gt_fixes))[1], max_pairs, thresholds[0], warp_seeds),
                  matcher_config=matcher_config)
    runs = {t: replace(val, threshold=t).run(model, torch.device("cpu")) for t in thresholds}
    results = {t: r.metrics for t, r in runs.items()}
    score = {t: r.score for t, r in runs.items()}
    for t in thresholds:
        m = results[t]
        print(f"threshold {t}: whole-image validation score {score[t]:.3f} ({m['all/n']} instances; success@3 "
              f"{m['all/success@3']:.2f}, optical-SAR success@3 {m.get('opt-sar/success@3', float('nan')):.2f}, "
              f"optical-SAR NCM {m.get('opt-sar/ncm', float('nan')):.0f})")
        modalities = sorted({k.split("/")[0] for k in m} - {"all"})
        print("  success@3 by modality: " + ", ".join(f"{mod} {m[f'{mod}/success@3']:.2f}" for mod in modalities if f"{mod}/success@3" in m))
    best = max(thresholds, key=lambda t: score[t])
    return model.set_coarse_threshold(best), {"scores": {str(t): v for t, v in score.items()}, "chosen": best, "best_metrics": results[best]}


def tune_threshold(model, ck: dict, data: Path, thresholds: list[float]):
    """Pick the coarse threshold with the best validation score (validation split of the training data only)."""
    from geomreg.data.manifest import read_manifest, split_pairs
    from geomreg.train.config import TrainConfig
    from geomreg.train.pairs import cache_pair
    from geomreg.train.validation import build_validation_set, validate

    cfg = TrainConfig.from_dict(ck["train_config"])
    _, val_recs = split_pairs(read_manifest(data), cfg.val_fraction)
    val_set = build_validation_set([cache_pair(r) for r in val_recs], cfg.val_size, cfg.val_pairs_per_modality)
    results = {}
    for t in thresholds:
        results[t] = validate(model.set_coarse_threshold(t), val_set, torch.device("cpu"))
        print(f"threshold {t}: validation score {results[t].score:.3f}")
    best = max(results, key=lambda t: results[t].score)
    return model.set_coarse_threshold(best), {"scores": {str(t): r.score for t, r in results.items()}, "chosen": best, "best_metrics": results[best].metrics}


def render_card(card: dict, notes: str | None = None) -> str:
    """docs/MODEL_CARD.md from the packaged weights' card (regnetmamba2.json), in the usual model-card sections;
    `notes` (docs/model_card_notes.md: results beyond validation, training history) close it."""
    v = card.get("validation", {})
    mods = sorted({k.split("/")[0] for k in v})
    rows = "\n".join(
        f"| {m} | {int(v.get(f'{m}/n', 0))} | {v.get(f'{m}/success@3', 0):.2f} | {v.get(f'{m}/success@5', 0):.2f} | {v.get(f'{m}/success@10', 0):.2f} | {v.get(f'{m}/ncm', 0):.1f} |"
        for m in mods
    )
    legs = "\n".join(f"- {leg.get('steps', 0)} steps on {leg.get('device')} ({leg.get('cpu_threads')} CPU thread(s), host {leg.get('host')}), from step {leg.get('start_step')}" for leg in card.get("training_legs", []))
    text = f"""# Model card: RegNetMamba-2 weights shipped with geomreg

## Model details

- **Model:** {card['model']}. The method: Li, Wu, Hu, Dai and Li, "Cross-Modality Feature Fusion Based on
  Structured State Space Duality for Multimodal Image Registration Network", arXiv:2606.03341, 2026
  (`CITATION.cff`), a coarse-to-fine matcher built on Mamba-2's structured state space duality.
- **Size:** {card['parameters'] / 1e6:.2f} M parameters, stored as fp16 (`geomreg/weights/regnetmamba2.pt`,
  sha256 `{card['sha256'][:16]}…`, checked on every load; its config is `geomreg/weights/regnetmamba2.json`).
- **Exported** with `python scripts/export_weights.py <checkpoint>` on {card['exported']}.

## Intended use

- Tie points between two images of the same scene taken by different sensors (optical, SAR, thermal and near
  infrared, night-time, depth, map renderings), through `geomreg.Matcher`, `geomreg.register` and the tools on
  them; the geospatial layer fits the transform and writes the registered scene.
- Moderate misregistration: rotations up to about 10°, scale changes up to about 10 %, images up to 1024 px
  per call (larger scenes are tiled).
- Not for: large rotations or scale changes, orthorectification, or data unlike the training data without
  checking first (run `benchmarks/accuracy.py` on your own pairs).

## Training data

{card['data']}. The held-out evaluation set (`multimodal/` beside the training data) played no part in
training, tuning or checkpoint choice. The sources (LJY-RS/SRIF, RoadScene from FLIR ADAS, the VIS-NIR set from
EPFL RGB-NIR) are public research datasets, not part of geomreg; their terms are listed in
`geomreg/weights/LICENSE.md`. SRIF's optical–SAR matrices were replaced by an audited re-estimate
(`data_audit/README.md`, `docs/training.md`).

## Training procedure

**Command:** `{card['command']}` (resumable with `--resume <out>/last.pt`).

**Training:** {card['steps']} optimiser steps in total.
{legs}

## Evaluation

**Validation** ({card['validation_protocol']}), at the shipped coarse threshold:

| modality | instances | success@3 px | success@5 px | success@10 px | NCM |
|---|---|---|---|---|---|
{rows}

These are the numbers recorded at export. How the Matcher runs the weights has changed since (scored in
`docs/training.md`); the accuracy benchmark against the peers, the held-out set and the methodology are in
`docs/benchmarks.md`.

## Limitations

- Every training leg since this step (longer, larger crops, GPU, a deeper design) has ended within the
  validation noise of these weights (`docs/training.md`).
- Success rates at 3 px are bounded by the ground truth: SRIF's optical–optical matrices are good to a few px,
  and its optical–SAR matrices needed the audit.
- These are geomreg's own weights, not the paper authors'; numbers here are not the paper's.

## Licences

- The weights: Apache-2.0, as the code (`LICENSE`), released by the geomreg contributors as far as their own
  rights go; `geomreg/weights/LICENSE.md`.
- The training data: their owners' terms (research use; no licence files in the source repositories), stated
  apart in `geomreg/weights/LICENSE.md`. Check them before commercial use.
"""
    if notes:
        text += "\n" + notes
    return text


def write_card_markdown(card: dict, path: Path, notes: str | None = None) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(render_card(card, notes))

if __name__ == "__main__":
    main()
