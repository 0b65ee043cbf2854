"""Outputs, each written atomically (a temporary file in the same folder, then a rename):

* the moving scene resampled onto the reference grid (COG through GDAL's COG driver, or tiled GeoTIFF),
  block by block so memory stays bounded;
* the moving scene with corrected georeferencing only (affine models) or with embedded GCPs;
* tie points as a GeoPackage layer and as a QGIS Georeferencer .points file;
* the JSON report.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from rasterio.control import GroundControlPoint
from rasterio.enums import Resampling
from rasterio.windows import Window

from geomreg.geo.errors import InputError, OutputError
from geomreg.geo.io import iter_blocks, to_crs

log = logging.getLogger(__name__)

_CV_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64")}
_INTERP = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_SPARSE_STEP = 16  # the inverse model is evaluated every 16 px and interpolated in between (GDAL does the same)


# --------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------


def check_output_path(path: str | os.PathLike, inputs: tuple[str, ...], overwrite: bool) -> Path:
    """Refuse an output that is one of the inputs, sits in a missing folder, or exists without overwrite."""
    p = Path(path).expanduser()
    for i in inputs:
        ip = Path(i).expanduser()
        if p.resolve() == ip.resolve() or (p.exists() and ip.exists() and os.path.samefile(p, ip)):
            raise InputError("the output path is one of the inputs; refusing to overwrite an input", str(p))
    if not p.parent.exists():
        raise InputError(f"the output folder {p.parent} does not exist", str(p))
    if p.exists() and not overwrite:
        raise InputError("the output exists already (use --overwrite / overwrite=True to replace it)", str(p))
    if p.exists() and p.is_dir():
        raise InputError("the output path is a directory", str(p))
    return p


# Temporary name -> the name it stands for, so that an error names the output the user asked for.
_STANDS_FOR: dict[str, Path] = {}


def _tmp_name(p: Path, suffix: str | None = None) -> Path:
    return p.with_name(f".{p.stem}.{uuid.uuid4().hex[:8]}.part{suffix or p.suffix}")


def _public(p: str | os.PathLike) -> Path:
    q = Path(p)
    for _ in range(4):
        if str(q) not in _STANDS_FOR:
            break
        q = _STANDS_FOR[str(q)]
    return q


def _remove(p: Path) -> None:
    for q in (p, Path(str(p) + ".aux.xml"), Path(str(p) + "-journal"), Path(str(p) + "-wal"), Path(str(p) + "-shm")):
        with contextlib.suppress(OSError):
            q.unlink()


# --------------------------------------------------------------------------------------------
# Faults of the machine -> OutputError
# --------------------------------------------------------------------------------------------

_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "the output folder vanished (no such file or directory)",
    errno.ENOTDIR: "the output folder vanished (not a directory)",
    errno.EIO: "input/output error",
}
# GDAL, libtiff, SQLite and pyogrio report a failed write with a message, not an errno: these say which.
_TEXT = (
    ("no space left", errno.ENOSPC), ("disk is full", errno.ENOSPC), ("disk full", errno.ENOSPC),
    ("quota", errno.EDQUOT), ("read-only file system", errno.EROFS), ("readonly database", errno.EROFS),
    ("permission denied", errno.EACCES), ("no such file or directory", errno.ENOENT),
)
_WRITERS = ("rasterio", "pyogrio", "fiona", "sqlite3", "geopandas")
_LOW_SPACE = 4 << 20  # GDAL writes a block (<= a few MiB) at a time: less free than this and a failed write ran out of room


def _probe(folder: Path) -> int | None:
    """Why writing into `folder` fails, seen from the file system (for errors that carry no errno)."""
    if not folder.is_dir():
        return errno.ENOENT
    try:
        st = os.statvfs(folder)
    except OSError as e:
        return e.errno
    if st.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if st.f_bavail * st.f_frsize < _LOW_SPACE:
        return errno.ENOSPC
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return None


def output_error(exc: BaseException, path: str | os.PathLike) -> OutputError | None:
    """The OutputError a failed write of `path` amounts to, or None when `exc` is not a fault of the machine
    (bad input, a bug). Call it while the temporary files still exist: a full disk frees up once they go."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, (InputError, KeyboardInterrupt, SystemExit, MemoryError)):
        return None
    p = _public(path)
    detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.errno is not None:
        code = exc.errno
        if code == errno.ENOENT and p.parent.is_dir():
            return OutputError(p, code, "no such file or directory", detail)
        return OutputError(p, code, _CAUSES.get(code) or (exc.strerror or str(exc)).lower(), detail)
    # GDAL's CPLE_* errors (rasterio._err), pyogrio's and SQLite's come from the libraries that write the files.
    if not isinstance(exc, OSError) and type(exc).__module__.split(".")[0] not in _WRITERS:
        return None
    text = str(exc).lower()
    code = next((c for t, c in _TEXT if t in text), None)
    if code is None:
        code = _probe(p.parent)
    if code is None:
        return OutputError(p, errno.EIO, f"input/output error ({detail})", detail)
    if code == errno.ENOENT and p.parent.is_dir():
        return OutputError(p, code, "no such file or directory", detail)
    return OutputError(p, code, _CAUSES[code], detail)


@contextlib.contextmanager
def machine_faults(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a failed write of `path` that the machine caused as OutputError (anything else unchanged)."""
    try:
        yield
    except Exception as e:
        err = output_error(e, path)
        if err is None or err is e:
            raise
        raise err from e


@contextlib.contextmanager
def atomic_output(path: Path, suffix: str | None = None, *, name: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` on success, delete it on any failure
    (including KeyboardInterrupt), so a half-written output never appears under the final name.
    A fault of the machine comes out as OutputError naming `name` (default `path`)."""
    tmp = _tmp_name(path, suffix)
    _STANDS_FOR[str(tmp)] = Path(name or path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        err = output_error(e, tmp) if isinstance(e, Exception) else None
        _remove(tmp)
        if err is not None and err is not e:
            raise err from e
        raise
    finally:
        _STANDS_FOR.pop(str(tmp), None)
    _remove(Path(str(tmp)))  # leftovers such as .aux.xml of the temporary name


# --------------------------------------------------------------------------------------------
# A set of outputs replaced all at once
# --------------------------------------------------------------------------------------------

_rename = os.replace  # every rename of a swap goes through this name (the tests make it fail at each step)
_SET_FILE = re.compile(r"^\.(?P<name>.+)\.(?P<token>[0-9a-f]{8})\.(?P<kind>new|old)$")
_JOURNAL = re.compile(r"^\.(?P<name>.+)\.(?P<token>[0-9a-f]{8})\.swap\.json$")


def _set_name(final: Path, token: str, kind: str) -> Path:
    # The final name is kept whole so that a leftover says which output it belongs to.
    return final.with_name(f".{final.name}.{token}.{kind}")


class OutputSet:
    """Several outputs (raster, tie points, .points, report) that replace an earlier set all at once.

    Each file is written under a staged name (`.<name>.<token>.new`) beside its final one. `commit` then
    (1) writes a journal `.<first name>.<token>.swap.json` listing the moves, (2) renames every existing
    final file to a backup `.<name>.<token>.old`, (3) renames every staged file to its final name, in
    order (the report last), (4) deletes the journal - the commit point - and (5) the backups. A failure
    in (1)-(3), an interrupt included, rolls back at once: backups return, new files go. A crash (power,
    SIGKILL) in (2)-(3) leaves the journal: `recover_output_set` (which every write of the same output runs
    first) rolls it back, so the old set is complete again. After (4) the new set is complete.
    Renames within one folder need no free space, so a full disk cannot stop a swap half-way.
    """

    def __init__(self, finals: dict[str, Path], overwrite: bool) -> None:
        self.token = uuid.uuid4().hex[:8]
        self.finals = {k: Path(v) for k, v in finals.items()}
        self.overwrite = overwrite
        self.staged = {k: _set_name(v, self.token, "new") for k, v in self.finals.items()}

    def __enter__(self) -> "OutputSet":
        for k, q in self.staged.items():
            _STANDS_FOR[str(q)] = self.finals[k]
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
        for q in self.staged.values():
            _STANDS_FOR.pop(str(q), None)

    def discard(self) -> None:
        for q in self.staged.values():
            _remove(q)

    def _journal_path(self) -> Path:
        first = next(iter(self.finals.values()))
        return first.with_name(f".{first.name}.{self.token}.swap.json")

    def commit(self) -> None:
        """Swap the staged files in (see the class docstring); on any failure the old set is left as it was."""
        if not self.overwrite:
            for f in self.finals.values():
                if f.exists():
                    self.discard()
                    raise InputError("the output exists already (another run wrote it meanwhile?); use --overwrite to replace it", str(f))
        entries = [{"final": str(f), "staged": str(self.staged[k]),
                    "backup": str(_set_name(f, self.token, "old")) if f.exists() else None} for k, f in self.finals.items()]
        journal = self._journal_path()
        jtmp = journal.with_name(journal.name + ".tmp")
        try:
            with machine_faults(entries[0]["final"]):  # the user knows the outputs, not the journal
                jtmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "entries": entries}))
                os.replace(jtmp, journal)
        except BaseException:
            _remove(jtmp)
            self.discard()
            raise
        current = entries[0]["final"]
        try:
            for e in entries:
                current = e["final"]
                if e["backup"] is not None:
                    with machine_faults(e["final"]):
                        _rename(e["final"], e["backup"])
            for e in entries:
                current = e["final"]
                with machine_faults(e["final"]):
                    _rename(e["staged"], e["final"])
        except BaseException as exc:
            log.warning("replacing %s failed (%s); restoring the previous outputs", current, exc)
            if _roll_back(entries):
                _remove(journal)
            else:
                log.error("the previous outputs could not all be restored; the journal %s lists the moves", journal)
            self.discard()
            raise
        with contextlib.suppress(OSError):
            journal.unlink()  # the commit point: from here on the new set is the output
        for e in entries:
            if e["backup"] is not None:
                _remove(Path(e["backup"]))


def _roll_back(entries: list[dict]) -> bool:
    """Undo a partial swap: backups back to their final names, new files that had no predecessor removed."""
    ok = True
    for e in reversed(entries):
        final, staged, backup = Path(e["final"]), Path(e["staged"]), e["backup"]
        try:
            if backup is not None:
                if Path(backup).exists():
                    os.replace(backup, final)
            elif final.exists() and not staged.exists():
                final.unlink()  # ours: the set had no such file before the swap
            _remove(staged)
        except OSError as err:
            log.error("cannot restore %s: %s", final, err)
            ok = False
    return ok


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return pid > 0


def leftovers(path: str | os.PathLike, names: tuple[str, ...] | None = None) -> list[Path]:
    """Temporary files an interrupted write of the output set at `path` left beside it: `.part` files,
    staged `.new` files, backups `.old`, journals. Only for a caller that knows no other process writes
    these outputs now (a batch, whose manifest gives every pair its own output)."""
    p = Path(path)
    names = names or (p.name,)
    pats = []
    for n in names:
        stem, name = re.escape(Path(n).stem), re.escape(n)
        pats += [rf"^\.{stem}\.[0-9a-f]{{8}}\.part", rf"^\.{name}\.[0-9a-f]{{8}}\.(new|old|swap\.json(\.tmp)?)$",
                 rf"^\.\.{name}\.[0-9a-f]{{8}}\.[0-9a-f]{{8}}\.part"]
    rx = re.compile("|".join(pats))
    if not p.parent.is_dir():
        return []
    return sorted(q for q in p.parent.iterdir() if rx.match(q.name))


def recover_output_set(path: str | os.PathLike, names: tuple[str, ...] | None = None) -> list[str]:
    """Finish what a crashed write of the output set at `path` left: roll back an interrupted swap (the old
    set returns whole) and delete backups of a swap that had committed. `names`: the file names of the set
    (default: `path`'s own name). Returns what it did, one line each. A journal of a swap still running in
    another live process on this host is left alone."""
    p = Path(path)
    folder = p.parent
    names = names or (p.name,)
    done: list[str] = []
    if not folder.is_dir():
        return done
    handled: set[str] = set()
    for j in sorted(folder.iterdir()):
        m = _JOURNAL.match(j.name)
        if not m or m.group("name") not in names:
            continue
        try:
            info = json.loads(j.read_text())
            entries = info["entries"]
            pid = int(info.get("pid", -1))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        handled.add(m.group("token"))
        if info.get("host") == socket.gethostname() and pid != os.getpid() and _alive(pid):
            continue
        if _roll_back(entries):
            j.unlink(missing_ok=True)
            done.append(f"rolled back an interrupted replacement of {m.group('name')} (journal {j.name})")
    for q in sorted(folder.iterdir()):
        m = _SET_FILE.match(q.name)
        if not m or m.group("name") not in names or m.group("token") in handled:
            continue
        if m.group("kind") == "old":
            # A backup without its journal: that swap committed, the new file is in place.
            _remove(q)
            done.append(f"removed the backup {q.name} of a completed replacement")
    for line in done:
        log.warning("%s: %s", folder, line)
    return done


# --------------------------------------------------------------------------------------------
# Resampling onto the reference grid
# --------------------------------------------------------------------------------------------


def _upsample(coarse: np.ndarray, ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear interpolation of values known at rows ys x cols xs onto the full h x w block."""
    def weights(knots: np.ndarray, n: int):
        t = np.arange(n, dtype=np.float64)
        i = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, max(len(knots) - 2, 0))
        if len(knots) == 1:
            return i, np.zeros(n)
        return i, (t - knots[i]) / (knots[i + 1] - knots[i])

    iy, ty = weights(ys, h)
    ix, tx = weights(xs, w)
    if len(ys) == 1:
        rows = np.repeat(coarse[:1], h, axis=0)
    else:
        rows = coarse[iy] * (1 - ty)[:, None] + coarse[iy + 1] * ty[:, None]
    if len(xs) == 1:
        return np.repeat(rows[:, :1], w, axis=1)
    return rows[:, ix] * (1 - tx)[None, :] + rows[:, ix + 1] * tx[None, :]


def source_coordinates(reg, block: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Moving-raster pixel coordinates (x, y; centre origin) of every pixel of a reference-grid block."""
    plan = reg.plan
    c, r, w, h = block
    xs = np.unique(np.r_[np.arange(0, w, _SPARSE_STEP), w - 1]).astype(np.float64)
    ys = np.unique(np.r_[np.arange(0, h, _SPARSE_STEP), h - 1]).astype(np.float64)
    gx, gy = np.meshgrid(xs + c, ys + r)
    ref_map = plan.reference.grid.px_to_map(np.c_[gx.ravel(), gy.ravel()])
    mov_map_ref_crs = plan.grid.px_to_map(reg.model.apply_inverse(plan.grid.map_to_px(ref_map)))
    mov_map = to_crs(mov_map_ref_crs, plan.grid.crs, plan.moving.grid.crs)
    mov_px = plan.moving.grid.map_to_px(mov_map)
    mx = _upsample(mov_px[:, 0].reshape(gx.shape), ys, xs, h, w)
    my = _upsample(mov_px[:, 1].reshape(gx.shape), ys, xs, h, w)
    return mx, my


def _remap(band: np.ndarray, mx: np.ndarray, my: np.ndarray, interp: int) -> np.ndarray:
    if np.iscomplexobj(band):
        return _remap(band.real, mx, my, interp) + 1j * _remap(band.imag, mx, my, interp)
    work = band if band.dtype in _CV_DTYPES else band.astype(np.float64)
    return cv2.remap(work, mx, my, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _cast(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if a.dtype == dtype:
        return a
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(a), info.min, info.max).astype(dtype)
    return a.astype(dtype)


def resample_block(reg, mds, block: tuple[int, int, int, int], resampling: str, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(data [bands, h, w], valid [h, w]) of one reference-grid block."""
    c, r, w, h = block
    mx, my = source_coordinates(reg, block)
    data = np.zeros((mds.count, h, w), dtype=dtype)
    valid = np.zeros((h, w), dtype=bool)
    fin = np.isfinite(mx) & np.isfinite(my)
    if not fin.any():
        return data, valid
    W, H = mds.width, mds.height
    x0 = max(int(np.floor(mx[fin].min())) - 3, 0)
    y0 = max(int(np.floor(my[fin].min())) - 3, 0)
    x1 = min(int(np.ceil(mx[fin].max())) + 4, W)
    y1 = min(int(np.ceil(my[fin].max())) + 4, H)
    if x1 <= x0 or y1 <= y0:
        return data, valid
    win = Window(x0, y0, x1 - x0, y1 - y0)
    # A much finer moving raster would need a huge window for one block: read it decimated instead.
    s = max(1, int(min((x1 - x0) / (2 * w), (y1 - y0) / (2 * h))))
    if s > 1:
        shape = (max(1, (y1 - y0) // s), max(1, (x1 - x0) // s))
        src = mds.read(window=win, out_shape=(mds.count,) + shape, resampling=Resampling.average)
        srcmask = mds.dataset_mask(window=win, out_shape=shape, resampling=Resampling.nearest) > 0
        fx, fy = (x1 - x0) / shape[1], (y1 - y0) / shape[0]
    else:
        src = mds.read(window=win)
        srcmask = mds.dataset_mask(window=win) > 0
        fx = fy = 1.0
    # Centre-origin pixel coordinates inside the window (scaled when decimated).
    u = np.where(fin, (mx - x0 + 0.5) / fx - 0.5, -1e6).astype(np.float32)
    v = np.where(fin, (my - y0 + 0.5) / fy - 0.5, -1e6).astype(np.float32)
    interp = _INTERP[resampling]
    m = srcmask.astype(np.float32)
    if resampling == "cubic":
        m = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    mw = cv2.remap(m, u, v, cv2.INTER_NEAREST if resampling == "nearest" else cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = mw >= (0.5 if resampling == "nearest" else 0.999)
    for b in range(mds.count):
        band = src[b]
        if not srcmask.all():
            band = np.where(srcmask, band, 0).astype(band.dtype)  # keep nodata values out of the kernels
        data[b] = _cast(_remap(band, u, v, interp), dtype)
    return data, valid


def _write_block(dst, data: np.ndarray, valid: np.ndarray, window: Window, nodata) -> None:
    if nodata is not None:
        data = data.copy()
        data[:, ~valid] = nodata
    dst.write(data, window=window)
    if nodata is None:
        dst.write_mask((valid * 255).astype(np.uint8), window=window)


def write_resampled(reg, path: Path, *, progress: bool = False) -> None:
    """The moving scene resampled onto the reference grid: every band, same dtype, nodata kept
    (a GDAL mask band marks what the moving scene does not cover when it has no nodata value)."""
    plan, cfg = reg.plan, reg.plan.config
    g = plan.reference.grid
    with rasterio.open(plan.moving.path) as mds:
        dtypes = {np.dtype(d) for d in mds.dtypes}
        dtype = dtypes.pop() if len(dtypes) == 1 else np.result_type(*mds.dtypes)
        nodata = mds.nodata
        profile = dict(
            driver="GTiff", width=g.width, height=g.height, count=mds.count, dtype=dtype.name,
            crs=None if g.crs is None else g.rio_crs, transform=g.affine, nodata=nodata,
            tiled=True, blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="IF_SAFER",
        )
        descriptions, colorinterp, tags = mds.descriptions, mds.colorinterp, mds.tags()
        blocks = list(iter_blocks(g.width, g.height, cfg.write_block))
        bar = _bar(progress, len(blocks), "writing")
        with atomic_output(path) as tmp:
            part = tmp if not cfg.cog else tmp.with_name(tmp.stem + ".gtiff.tif")
            _STANDS_FOR[str(part)] = path
            try:
                with machine_faults(part):  # translated now, while the partial files still fill the disk
                    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                        with rasterio.open(part, "w", **profile) as dst:
                            for blk in blocks:
                                try:
                                    data, valid = resample_block(reg, mds, blk, cfg.resampling, dtype)
                                except rasterio.errors.RasterioError as e:
                                    raise InputError(f"moving raster data cannot be read (corrupt?): {e}", plan.moving.path) from None
                                _write_block(dst, data, valid, Window(*blk), nodata)
                                if bar is not None:
                                    bar.update(1)
                            dst.descriptions = descriptions
                            with contextlib.suppress(Exception):
                                dst.colorinterp = colorinterp
                            dst.update_tags(**tags, GEOMREG_REGISTERED="moving scene resampled onto the reference grid")
                        if cfg.cog:
                            rasterio.shutil.copy(part, tmp, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512, BIGTIFF="IF_SAFER")
            finally:
                _STANDS_FOR.pop(str(part), None)
                if bar is not None:
                    bar.close()
                if part != tmp:
                    _remove(part)


def write_georef(reg, path: Path) -> None:
    """The moving pixels unchanged, with a corrected geotransform (translation/affine in the same CRS)."""
    plan = reg.plan
    M = reg.model.matrix()
    if reg.model.kind not in ("translation", "affine") or M is None:
        raise InputError(f"corrected georeferencing needs an affine model, this registration has {reg.model.kind}", str(path))
    from rasterio.transform import Affine

    from geomreg.geo.io import same_crs

    if not same_crs(plan.moving.grid.crs, plan.grid.crs):
        raise InputError("corrected georeferencing needs the moving scene in the reference CRS; write the resampled output instead", str(path))
    G = np.vstack([np.asarray(plan.grid.transform).reshape(2, 3), [0, 0, 1.0]])
    C = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    Mm = G @ np.linalg.inv(C) @ M @ C @ np.linalg.inv(G)
    T = np.vstack([np.asarray(plan.moving.grid.transform).reshape(2, 3), [0, 0, 1.0]])
    new = Mm @ T
    _copy_with(plan.moving.path, path, transform=Affine(*new[:2].ravel()))


def write_gcps(reg, path: Path, n: int = 8) -> None:
    """The moving pixels unchanged, with an n x n grid of GCPs (moving pixel -> corrected reference map
    coordinates): GIS software can then warp it with its own polynomial or spline."""
    plan = reg.plan
    g = plan.moving.grid
    cols, rows = np.meshgrid(np.linspace(0, g.width - 1, n), np.linspace(0, g.height - 1, n))
    px = np.c_[cols.ravel(), rows.ravel()]
    mov_ref_crs = to_crs(g.px_to_map(px), g.crs, plan.grid.crs)
    xy = reg._map_forward(mov_ref_crs)
    gcps = [GroundControlPoint(row=float(p[1] + 0.5), col=float(p[0] + 0.5), x=float(q[0]), y=float(q[1]), id=str(i))
            for i, (p, q) in enumerate(zip(px, xy))]
    _copy_with(plan.moving.path, path, gcps=gcps, gcp_crs=plan.grid.rio_crs)


def _copy_with(src_path: str, path: Path, transform=None, gcps=None, gcp_crs=None) -> None:
    with rasterio.open(src_path) as src, atomic_output(path) as tmp:
        profile = src.profile.copy()
        profile.update(driver="GTiff", tiled=True, blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
        if transform is not None:
            profile["transform"] = transform
        if gcps is not None:
            profile.pop("transform", None)
            profile.pop("crs", None)
        with rasterio.open(tmp, "w", **profile) as dst:
            for c, r, w, h in iter_blocks(src.width, src.height, 1024):
                win = Window(c, r, w, h)
                dst.write(src.read(window=win), window=win)
            if gcps is not None:
                dst.gcps = (gcps, gcp_crs)


# --------------------------------------------------------------------------------------------
# Tie points and report
# --------------------------------------------------------------------------------------------


def write_geopackage(gdf, path: Path) -> None:
    with atomic_output(path, ".gpkg") as tmp:
        gdf.to_file(tmp, layer="tie_points", driver="GPKG")


def write_qgis_points(reg, path: Path) -> None:
    """QGIS Georeferencer .points: map coordinates (reference CRS) <- moving raster pixel coordinates
    (QGIS counts them from the top-left corner, rows negative)."""
    tp = reg._tie_points
    lines = []
    if reg.plan.grid.crs is not None:
        lines.append(f"#CRS: {reg.plan.grid.crs}")
    lines.append("mapX,mapY,sourceX,sourceY,enable,dX,dY,residual")
    for i in range(len(tp)):
        rx, ry = tp.ref_map[i]
        sx, sy = tp.mov_file_px[i] + 0.5
        dx, dy = tp.residual_vec_px[i]
        lines.append(f"{rx:.6f},{ry:.6f},{sx:.6f},{-sy:.6f},{int(tp.inlier[i])},{dx:.6f},{dy:.6f},{np.hypot(dx, dy):.6f}")
    with atomic_output(path, ".points") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(obj: dict, path: Path) -> None:
    with atomic_output(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _bar(progress: bool, total: int, desc: str):
    if not progress or total <= 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="block", leave=False)
