"""Audited ground truth replaces the dataset's where given; unverified pairs drop out."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from geomreg.data.manifest import GT_FIX_COLUMNS, DatasetError, load_pair, read_dataset, read_gt_fixes, split_pairs
from tests.evaluation.synth import two_pair_dataset, write_manifest


def write_fixes(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(GT_FIX_COLUMNS) + ["reason"])
        w.writeheader()
        w.writerows(rows)
    return path


def fix_row(pair_id: str, verdict: str, H: np.ndarray | None) -> dict:
    row = {"pair_id": pair_id, "verdict": verdict, "reason": ""}
    for i in range(3):
        for j in range(3):
            row[f"h{i}{j}"] = "" if H is None else repr(float(H[i, j]))
    return row


def test_fixes_replace_and_drop(tmp_path):
    root = two_pair_dataset(tmp_path / "ds")
    H_new = np.array([[1.0, 0.0, 7.5], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    fixes = write_fixes(tmp_path / "fixes.csv", [fix_row("syn_vi_0001", "corrected", H_new), fix_row("syn_oo_0001", "unverified", None)])
    records = read_dataset(root, fixes)
    assert [r.pair_id for r in records] == ["syn_vi_0001"]
    _, _, H = load_pair(records[0])
    assert np.allclose(H, H_new)
    assert len(read_dataset(root)) == 2  # without fixes: the dataset as is
    # the split is by pair id, so fixes never move a pair between train and validation
    assert {r.pair_id for r in split_pairs(records)[1]} <= {r.pair_id for r in split_pairs(read_dataset(root))[1]}


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "not found"),
        ("pair_id,verdict\nx,corrected\n", "missing columns"),
        (",".join(GT_FIX_COLUMNS) + "\nx,corrected," + ",".join(["a"] * 9) + "\n", "malformed"),
        (",".join(GT_FIX_COLUMNS) + "\nx,corrected," + ",".join(["0"] * 9) + "\n", "invertible"),
    ],
)
def test_bad_fixes_file_names_the_problem(tmp_path, content, problem):
    path = tmp_path / "fixes.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=problem):
        read_gt_fixes(path)


def _set_gt_column(root: Path, pair_id: str, aligned: str, gt: str) -> None:
    """Rewrite one manifest row the way evaluation sets list an already co-registered pair."""
    manifest = root / "MANIFEST.csv"
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["pair_id"] == pair_id:
            row["aligned"], row["gt"] = aligned, gt
    write_manifest(root, rows)


def test_aligned_pair_without_matrix_is_the_identity(tmp_path):
    root = two_pair_dataset(tmp_path / "ds")
    (root / "vis-ir" / "syn_vi_0001" / "H_mov_to_ref.txt").unlink()
    _set_gt_column(root, "syn_vi_0001", "yes", "none")
    rec = {r.pair_id: r for r in read_dataset(root)}["syn_vi_0001"]
    assert rec.aligned and rec.h_path is None
    assert np.array_equal(load_pair(rec)[2], np.eye(3))


def test_aligned_pair_with_matrix_keeps_it(tmp_path):
    root = two_pair_dataset(tmp_path / "ds")
    H_file = np.loadtxt(root / "vis-ir" / "syn_vi_0001" / "H_mov_to_ref.txt", comments="#")
    _set_gt_column(root, "syn_vi_0001", "yes", "vis-ir/syn_vi_0001/H_mov_to_ref.txt")
    rec = {r.pair_id: r for r in read_dataset(root)}["syn_vi_0001"]
    assert np.allclose(load_pair(rec)[2], H_file / H_file[2, 2])


def test_unaligned_pair_without_matrix_names_the_pair(tmp_path):
    root = two_pair_dataset(tmp_path / "ds")
    (root / "vis-ir" / "syn_vi_0001" / "H_mov_to_ref.txt").unlink()
    _set_gt_column(root, "syn_vi_0001", "no", "none")
    rec = {r.pair_id: r for r in read_dataset(root)}["syn_vi_0001"]
    with pytest.raises(DatasetError, match="syn_vi_0001.*missing"):
        load_pair(rec)
