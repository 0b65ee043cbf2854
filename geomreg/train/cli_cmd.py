"""`geomreg train --data DIR --out DIR [--config FILE] [--resume CKPT]`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click


@click.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Dataset directory with MANIFEST.csv.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Where checkpoints and logs go.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="JSON or YAML with TrainConfig fields.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), help="Training checkpoint to continue from (e.g. OUT/last.pt).")
@click.option("--init-weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Start from these weights with a fresh optimiser (e.g. geomreg/weights/regnetmamba2.pt).")
@click.option("--model-config", "model_config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help='JSON of RegNetMamba2Config fields to change, e.g. {"encoder": {"self_blocks": [0, 0, 1]}}: over the '
              "--init-weights design (a slimmer design keeping some of those weights, or a deeper one keeping all of them, "
              "its new blocks starting as identities) or the default one.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--max-minutes", type=float, default=None, help="Stop after this many minutes (a checkpoint is written).")
@click.option("--max-steps", type=int, default=None)
def train_command(data_dir: Path, out_dir: Path, config_file: Path | None, resume: Path | None, init_weights: Path | None, model_config_file: Path | None, device: str, max_minutes, max_steps) -> None:
    """Train RegNetMamba-2 on a dataset directory (resumable)."""
    from geomreg.data.manifest import DatasetError
    from geomreg.matching.weights import CheckpointError
    from geomreg.train.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # No --config: a resumed run keeps its checkpoint's config (train reads it; the file is read once).
        cfg = _read_config(config_file) if config_file is not None else None
        limits = {k: v for k, v in (("max_minutes", max_minutes), ("max_steps", max_steps)) if v is not None}
        if resume is not None and init_weights is not None:
            raise ValueError("--resume and --init-weights exclude each other")
        overrides = json.loads(model_config_file.read_text()) if model_config_file is not None else None
        if overrides is not None and not isinstance(overrides, dict):
            raise ValueError(f"{model_config_file}: expected a JSON object of config sections")
        res = train(data_dir, out_dir, cfg, resume=resume, init_weights=init_weights, model_overrides=overrides, overrides=limits, device=device)
    except (DatasetError, CheckpointError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    if res is not None:
        click.echo(json.dumps({"score": res.score, **res.metrics}, indent=1))


def _read_config(path: Path):
    """A --config file as a TrainConfig; ValueError naming the file on bad syntax or an unknown field."""
    from geomreg.train.config import TrainConfig

    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError: say which file, not where in the parser
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    try:
        return TrainConfig.from_dict(data or {}, strict=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
