"""Check or strip the outputs of notebooks: outputs never go into git.

    .venv/bin/python scripts/strip_notebooks.py            # strip notebooks/*.ipynb in place
    .venv/bin/python scripts/strip_notebooks.py --check    # exit 1 listing notebooks that carry outputs
    .venv/bin/python scripts/strip_notebooks.py a.ipynb    # only these files

Stripped: code-cell outputs and execution counts, per-cell run metadata (execution times, collapsed,
scrolled, ...) and notebook metadata other than the kernel and the language (widget state, ...).
A stripped notebook is written in the same format as scripts/make_notebooks.py writes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")
KEEP_CELL_METADATA = ("tags",)


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs and run metadata (a copy)."""
    nb = nbformat.from_dict(nb)
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k in KEEP_NOTEBOOK_METADATA})
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": nb.metadata["language_info"].get("name", "python")}
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def dirty(path: Path) -> bool:
    """True when the file differs from its stripped form."""
    text = path.read_text(encoding="utf-8")
    return render(strip(nbformat.reads(text, as_version=4))) != text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    ap.add_argument("--check", action="store_true", help="only report; exit 1 when a notebook carries outputs")
    args = ap.parse_args(argv)
    paths = args.paths or sorted((REPO / "notebooks").glob("*.ipynb"))
    bad = []
    for p in paths:
        try:
            is_dirty = dirty(p)
        except (OSError, ValueError, nbformat.ValidationError) as e:
            print(f"error: {p}: not a readable notebook: {e}", file=sys.stderr)
            return 2
        if not is_dirty:
            continue
        if args.check:
            bad.append(p)
            continue
        nb = strip(nbformat.read(p, as_version=4))
        tmp = p.with_name(f".{p.name}.part")
        tmp.write_text(render(nb), encoding="utf-8")
        tmp.replace(p)  # atomic: never a half-written notebook
        print(f"stripped {p}")
    if bad:
        print("notebooks with outputs (run scripts/strip_notebooks.py): " + ", ".join(map(str, bad)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
