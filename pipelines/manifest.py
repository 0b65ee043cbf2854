"""Batch manifests: CSV (or YAML) lists of scene pairs with optional per-pair options.

CSV: a header with `reference,moving` and optionally `output` plus option columns, one pair per row::

    reference,moving,output,transform,tile_size
    scenes/a_ref.tif,scenes/a_mov.tif,,affine,
    scenes/b_ref.tif,scenes/b_mov.tif,b/registered.tif,,256

YAML: ``pairs:`` (a list of mappings with the same keys) and optional ``defaults:`` for all pairs,
or a bare list of mappings.

Paths: an empty output becomes ``OUT_DIR/<moving name>_registered.tif``; relative outputs resolve
against OUT_DIR; relative inputs resolve against the manifest's folder (or, when the file is not
there, the current directory); URLs and GDAL ``/vsi`` paths are kept as they are. Empty cells take the
command-line value. Every problem is reported with the manifest, the line and the column.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from geomreg.geo.config import TRANSFORM_CHOICES, RegistrationConfig
from geomreg.geo.errors import InputError

WRITE_MODES = ("resample", "georef", "gcps")
MATCHERS = ("auto", "regnetmamba2", "regnetmamba2+polish", "cfog", "regnetmamba2+cfog")
REQUIRED = ("reference", "moving")
# Per-pair option columns that are RegistrationConfig fields, exactly as `geomreg register` takes them.
REGISTRATION_COLUMNS = ("transform", "tile_size", "overlap", "max_shift", "ref_band", "mov_band", "resolution", "pixel_mode",
                        "max_memory", "tiles", "max_uncertainty")
OTHER_COLUMNS = ("matcher", "checkpoint", "mode", "batch_size")
KNOWN_COLUMNS = REQUIRED + ("output",) + REGISTRATION_COLUMNS + OTHER_COLUMNS


class ManifestError(InputError):
    """The manifest cannot be used (CLI exit code 2); the message names the file, the line and the problem."""


@dataclass(frozen=True)
class BatchDefaults:
    """Options for every pair (the command line); manifest columns override them pair by pair.

    The registration values are the strings and numbers `geomreg register` receives from its own
    options, so that a pair in a batch is configured exactly like the same pair on the command line.
    """

    transform: str = "auto"
    tile_size: int = 512
    overlap: int = 64
    max_shift: str = "32"
    ref_band: str = "auto"
    mov_band: str = "auto"
    resolution: float | None = None
    pixel_mode: bool = False
    max_memory: str | None = None  # per pair and so per worker: the RSS its tile matching may reach (e.g. 1.5G)
    tiles: str = "auto"
    max_uncertainty: float = 0.1
    matcher: str = "auto"
    checkpoint: str | None = None
    mode: str = "resample"
    batch_size: int = 8  # tiles per matcher batch, and so per Dask task

    def values(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in REGISTRATION_COLUMNS + OTHER_COLUMNS}


@dataclass(frozen=True)
class PairJob:
    """One pair, fully resolved: absolute paths, its RegistrationConfig and matcher. Small and picklable."""

    index: int  # 1-based position in the manifest
    where: str  # "line 3" (CSV) or "pair 3" (YAML), for messages
    reference: str
    moving: str
    output: str
    config: RegistrationConfig
    matcher: str = "auto"
    checkpoint: str | None = None
    mode: str = "resample"
    options: tuple[tuple[str, Any], ...] = field(default=())  # the per-pair overrides, as read

    @property
    def name(self) -> str:
        return _basename(self.moving)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _is_url(p: str) -> bool:
    return "://" in p or p.startswith("/vsi")


def _basename(p: str) -> str:
    return p.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _as_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, int):
        return v
    f = float(str(v).strip())
    if not f.is_integer():
        raise ValueError
    return int(f)


def _as_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError
    return float(str(v).strip())


def _as_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "y", "on"):
        return True
    if s in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError


def _as_str(v: Any) -> str:
    return str(v).strip()


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = str(v).strip().lower()
        if s not in choices:
            raise ValueError
        return s

    return parse


_PARSERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "transform": (_choice(TRANSFORM_CHOICES), "one of " + ", ".join(TRANSFORM_CHOICES)),
    "tile_size": (_as_int, "an integer"),
    "overlap": (_as_int, "an integer"),
    "max_shift": (_as_str, "pixels (40) or map units (300m)"),
    "ref_band": (_as_str, "auto, luminance, mean or a band number"),
    "mov_band": (_as_str, "auto, luminance, mean or a band number"),
    "resolution": (_as_float, "a number"),
    "pixel_mode": (_as_bool, "true or false"),
    "max_memory": (_as_str, "a size such as 1.5G or 1500MB"),
    "tiles": (_choice(("auto", "all")), "auto or all"),
    "max_uncertainty": (_as_float, "a number (px)"),
    "matcher": (_choice(MATCHERS), "one of " + ", ".join(MATCHERS)),
    "checkpoint": (_as_str, "a local file path"),
    "mode": (_choice(WRITE_MODES), "one of " + ", ".join(WRITE_MODES)),
    "batch_size": (_as_int, "an integer"),
}


def _normalise_key(k: Any) -> str:
    return str(k).strip().lower().replace("-", "_").replace(" ", "_")


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    where: str
    values: dict[str, Any]


def _read_text(path: Path) -> str:
    if not path.exists():
        raise ManifestError("manifest not found", path)
    if path.is_dir():
        raise ManifestError("manifest path is a directory, not a CSV or YAML file", path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError("manifest is not a UTF-8 text file (a CSV or YAML manifest is expected)", path) from None
    except OSError as e:
        raise ManifestError(f"manifest cannot be read: {e.strerror or e}", path) from None


def _check_columns(keys: Iterable[str], path: Path, where: str) -> None:
    unknown = [k for k in keys if k not in KNOWN_COLUMNS]
    if unknown:
        raise ManifestError(
            f"{where}: unknown column(s) {', '.join(repr(k) for k in unknown)}; known columns: {', '.join(KNOWN_COLUMNS)}", path
        )


def _read_csv(path: Path, text: str) -> list[_Entry]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    entries: list[_Entry] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue  # blank lines and comments
        if header is None:
            header = [_normalise_key(c) for c in row]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ManifestError(
                    f"line {line}: the header must name the columns reference and moving (missing: {', '.join(missing)}); "
                    f"found {', '.join(repr(c) for c in row)}", path,
                )
            dup = sorted({c for c in header if header.count(c) > 1 and c})
            if dup:
                raise ManifestError(f"line {line}: column(s) {', '.join(dup)} appear more than once in the header", path)
            _check_columns([c for c in header if c], path, f"line {line}")
            continue
        if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
            raise ManifestError(f"line {line}: {len(row)} cells but the header has {len(header)} columns", path)
        values = {k: v for k, v in zip(header, row) if k}
        entries.append(_Entry(f"line {line}", values))
    if header is None:
        raise ManifestError("manifest is empty (expected a header with reference,moving[,output,...] and one row per pair)", path)
    return entries


def _read_yaml(path: Path, text: str) -> list[_Entry]:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ManifestError(f"not valid YAML: {e}", path) from None
    defaults: dict[str, Any] = {}
    if isinstance(doc, dict):
        extra = set(doc) - {"pairs", "defaults"}
        if extra:
            raise ManifestError(f"unknown top-level key(s) {', '.join(map(repr, sorted(map(str, extra))))}; expected pairs and defaults", path)
        if doc.get("defaults") is not None and not isinstance(doc["defaults"], dict):
            raise ManifestError("'defaults' must be a mapping of option: value", path)
        defaults = {_normalise_key(k): v for k, v in (doc.get("defaults") or {}).items()}
        _check_columns(defaults, path, "defaults")
        bad = [k for k in defaults if k in REQUIRED + ("output",)]
        if bad:
            raise ManifestError(f"defaults cannot set {', '.join(bad)} (per-pair values)", path)
        doc = doc.get("pairs")
    if not isinstance(doc, list):
        raise ManifestError("a YAML manifest is a list of pairs, or a mapping with 'pairs:' (a list) and optional 'defaults:'", path)
    entries = []
    for i, item in enumerate(doc, start=1):
        where = f"pair {i}"
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: expected a mapping with reference, moving[, output, options], got {type(item).__name__}", path)
        values = {_normalise_key(k): v for k, v in item.items()}
        _check_columns(values, path, where)
        entries.append(_Entry(where, {**defaults, **values}))
    return entries


def _resolve_input(p: str, base: Path) -> str:
    if _is_url(p):
        return p
    q = Path(p).expanduser()
    if q.is_absolute():
        return str(q)
    cand = (base / q).resolve()
    if not cand.exists() and (Path.cwd() / q).exists():
        return str((Path.cwd() / q).resolve())
    return str(cand)


def _resolve_output(p: str | None, moving: str, out_dir: Path) -> str:
    if p is None:
        stem = Path(_basename(moving)).stem or "moving"
        return str(out_dir / f"{stem}_registered.tif")
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (out_dir / q).resolve())


def _job(entry: _Entry, index: int, manifest: Path, out_dir: Path, defaults: BatchDefaults) -> PairJob:
    def fail(msg: str) -> ManifestError:
        return ManifestError(f"{entry.where}: {msg}", manifest)

    vals = entry.values
    for key in REQUIRED:
        if _empty(vals.get(key)):
            raise fail(f"the {key} path is empty")
    options: dict[str, Any] = {}
    for key in REGISTRATION_COLUMNS + OTHER_COLUMNS:
        raw = vals.get(key)
        if _empty(raw):
            continue
        parse, expected = _PARSERS[key]
        try:
            options[key] = parse(raw)
        except (TypeError, ValueError):
            raise fail(f"column {key}: {raw!r} is not {expected}") from None
    if "checkpoint" in options and _is_url(options["checkpoint"]):
        raise fail("column checkpoint: weights are loaded only from the package or a local file, not from a URL")
    merged = {**defaults.values(), **options}
    if merged["batch_size"] < 1:
        raise fail(f"column batch_size: must be at least 1, got {merged['batch_size']}")

    from geomreg.cli_options import config_from_options

    try:
        cfg = config_from_options(**{k: merged[k] for k in REGISTRATION_COLUMNS})
        from dataclasses import replace

        cfg = replace(cfg, batch_size=merged["batch_size"])
    except (InputError, TypeError) as e:
        msg = e.problem if isinstance(e, InputError) else str(e)
        raise fail(msg) from None
    ref = _resolve_input(_as_str(vals["reference"]), manifest.parent)
    mov = _resolve_input(_as_str(vals["moving"]), manifest.parent)
    out = _resolve_output(None if _empty(vals.get("output")) else _as_str(vals["output"]), mov, out_dir)
    if _is_url(out):
        raise fail(f"output {out!r} must be a local path")
    if out.endswith(os.sep) or Path(out).is_dir():
        raise fail(f"output {out} is a directory; give a file name")
    for role, p in (("reference", ref), ("moving", mov)):
        if not _is_url(p) and Path(out) == Path(p):
            raise fail(f"the output is the {role} input ({p}); refusing to overwrite an input")
    ckpt = merged["checkpoint"]
    if ckpt is not None:
        ckpt = _resolve_input(str(ckpt), manifest.parent)
    return PairJob(index=index, where=entry.where, reference=ref, moving=mov, output=out, config=cfg, matcher=merged["matcher"],
                   checkpoint=ckpt, mode=merged["mode"], options=tuple(sorted(options.items())))


def load_manifest(path: str | os.PathLike, out_dir: str | os.PathLike, defaults: BatchDefaults | None = None) -> list[PairJob]:
    """Read and validate a CSV (or .yaml/.yml) manifest; raise ManifestError naming the line and the problem.

    Input files are not opened here: a missing or unreadable scene fails its own pair, not the batch.
    """
    p = Path(path).expanduser()
    out = Path(out_dir).expanduser().resolve()
    text = _read_text(p)
    entries = _read_yaml(p, text) if p.suffix.lower() in (".yaml", ".yml") else _read_csv(p, text)
    if not entries:
        raise ManifestError("manifest lists no pairs (only a header)", p)
    d = defaults or BatchDefaults()
    jobs = [_job(e, i, p.resolve(), out, d) for i, e in enumerate(entries, start=1)]
    seen: dict[str, PairJob] = {}
    for j in jobs:
        key = os.path.normcase(j.output)
        if key in seen:
            first = seen[key]
            raise ManifestError(
                f"{first.where} and {j.where} write the same output {j.output} "
                "(give an output column, or moving files with different names)", p,
            )
        seen[key] = j
    inputs = {os.path.normcase(x): j for j in jobs for x in (j.reference, j.moving)}
    for j in jobs:
        other = inputs.get(os.path.normcase(j.output))
        if other is not None:
            raise ManifestError(
                f"{j.where}: the output {j.output} is an input of {other.where}", p
            )
    return jobs
