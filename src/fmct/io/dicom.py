"""DICOM CT series -> :class:`~fmct.io.volume.Volume`.

``discover`` (headers only) groups files into :class:`SeriesRef`; ``read_series`` keeps axial CT image
series and turns them into an HU volume (int16 when every slice's rescale gives integer HU within int16,
exactly the values a float32 read gives; float32 otherwise) with a voxel->RAS affine:

* skipped (:class:`SkipScan`): other modalities (MR, ...), dose reports / structured reports, secondary
  captures, non-CT SOP classes, localizers/scouts (ImageType LOCALIZER), fewer than ``min_slices``
  slices, sagittal/coronal images.
* failed (:class:`InvalidScan`): missing/undecodable/truncated pixel data, inconsistent slice sizes,
  orientations or pixel spacings, NaN/Inf or zero rescale, slices not on one line, more than
  ``max_missing`` missing slices, two slices at the same position with different pixels, and any other
  unreadable file ("unreadable DICOM: <ExceptionType>: <message>").
* handled, with a note in ``meta["warnings"]``: uneven or variable spacing (resampled to a regular grid;
  e.g. 4 mm slices then 7 mm slices, a gap being real only where the slice thicknesses do not cover it),
  1-2 missing slices (interpolated), duplicate positions with identical pixels (dropped), localizer images mixed into
  an axial series (dropped). Gantry tilt is kept in a sheared affine (``meta["tilt_deg"]``, signed: see
  :func:`fmct.io.dicom_geometry.tilt_degrees`). Slice spacings (``meta["slice_spacing"]``, warnings,
  errors) are measured perpendicular to the slices, not along a tilted stack.

Slices are sorted by position along the image-plane normal, never by file name or InstanceNumber.
Per-slice rescale slope/intercept are applied. The array is ``(X, Y, Z)`` = (column, row, slice) of the
DICOM images, stored as a transposed view of a ``(Z, Y, X)`` C-contiguous buffer (so Fortran-ordered);
no reorientation is done here (preprocess reorients to RAS via the affine).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from fmct.io.dicom_discover import DiscoveryResult, Rejected, SeriesRef, discover, discover_files
from fmct.io.dicom_file import read_dicom
from fmct.io.dicom_frames import CT_SOP_CLASSES, Frame, check_skip, frames_of, uid_name
from fmct.io.dicom_geometry import (
    affine_ras,
    check_axial,
    duplicate_groups,
    plan_stack,
    plane_axes,
    resample_slices,
    stacking_line,
    tilt_degrees,
)
from fmct.io.dicom_pixels import int16_rescale, native16_layout, read_native16, rescale_into, stored_pixels
from fmct.io.dicom_slice import read_header as _read_header
from fmct.io.errors import InvalidScan, ScanProblem, SkipScan
from fmct.io.volume import Volume
from fmct.timing import stage

__all__ = ["DiscoveryResult", "Rejected", "SeriesRef", "discover", "discover_files", "read_series"]

_MAX_VOXELS = 2048 * 2048 * 2048  # 32 GiB of float32: larger is a broken header, not a head CT
_PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)


def read_series(
    ref: SeriesRef,
    *,
    min_slices: int = 10,
    gap_tolerance: float = 0.1,
    max_missing: int = 2,
) -> Volume:
    """Read one discovered series as an HU volume (int16 when exact, else float32; see module doc).

    Args:
        ref: from :func:`discover`.
        min_slices: fewer slices -> SkipScan (scouts, partial series). At least 2.
        gap_tolerance: largest allowed deviation of a slice from the uniform grid, as a fraction of the
            median slice gap, before the stack is resampled.
        max_missing: at most this many missing slices are filled by interpolation; more -> InvalidScan.

    Returns:
        :class:`Volume` with ``array`` ``(X, Y, Z)`` int16 or float32 HU, ``affine`` voxel->RAS mm and
        de-identified ``meta`` (see module doc).

    Raises:
        SkipScan: not an axial CT image series. InvalidScan: broken CT series. Nothing else.
    """
    headers: list[Any] = []  # first headers read, used only to scrub PHI values out of error messages
    try:
        return _read_series(ref, headers, max(2, int(min_slices)), gap_tolerance, max_missing)
    except ScanProblem as exc:
        clean = _scrub(exc.reason, _with_headers(headers, ref), ref, strip_quoted=False)
        if clean == exc.reason:
            raise
        raise type(exc)(clean) from None
    except MemoryError as exc:
        raise InvalidScan("unreadable DICOM: MemoryError (image dimensions too large?)") from exc
    except Exception as exc:  # anything unexpected from a malformed file becomes a clean InvalidScan
        raise InvalidScan(
            f"unreadable DICOM: {type(exc).__name__}: {_scrub(str(exc), _with_headers(headers, ref), ref)}"
        ) from exc


def _with_headers(headers: list[Any], ref: SeriesRef, n: int = 3) -> list[Any]:
    """``headers`` topped up to ``n`` with headers of the series' first files (where discovery's facts
    spared the reader from parsing them), for scrubbing their identifying values out of a message."""
    if ref.facts is None:
        return headers
    out = list(headers)
    for path in ref.files[: n + 1]:
        if len(out) >= n:
            break
        try:
            out.append(read_dicom(path, stop_before_pixels=True))
        except Exception:  # unreadable: the UID pattern of _scrub still applies
            continue
    return out


def _scrub(message: str, headers: list[Any], ref: SeriesRef, strip_quoted: bool = True) -> str:
    """``message`` without PHI values of the series' headers, raw UIDs and (``strip_quoted``) any quoted
    value a library echoed from a header; at most 240 characters."""
    secrets = {ref.series_uid}
    for ds in headers[:3]:
        for kw in _PHI_KEYWORDS:
            try:
                value = str(ds.get(kw, "") or "").strip()
            except Exception:  # an undecodable value cannot be scrubbed by value; the regex below still helps
                continue
            if len(value) >= 3:
                secrets.add(value)
    for s in sorted(secrets, key=len, reverse=True):
        message = message.replace(s, "<redacted>")
    message = re.sub(r"\b\d+(\.\d+){4,}\b", "<uid>", message)  # anything UID-shaped
    if strip_quoted:
        message = re.sub(r"b?'[^']*'|b?\"[^\"]*\"", "<value>", message)
    message = " ".join(message.split())
    return message[:240]


def _read_series(ref: SeriesRef, headers: list[Any], min_slices: int, gap_tol: float, max_missing: int):
    if not ref.files:
        raise InvalidScan("series without files")
    # Cheap early exit on the first header: MR, SR, SC ... are skipped without reading pixels.
    first = read_dicom(ref.files[0], stop_before_pixels=True)
    headers.append(first)
    check_skip(first)
    if ref.n_files < min_slices and int(first.get("NumberOfFrames", 1) or 1) < 2:
        if "LOCALIZER" in str(first.get("ImageType", "")).upper():
            raise SkipScan("localizer/scout image")
        raise SkipScan(f"only {ref.n_files} slice(s) (< {min_slices}): localizer or partial series")

    with stage("read files"):
        frames, datasets, sources = _read_files(ref, headers)

    warnings: list[str] = []
    n_loc = sum(f.localizer for f in frames)
    if n_loc == len(frames):
        raise SkipScan("localizer/scout image")
    if n_loc:
        frames = [f for f in frames if not f.localizer]
        warnings.append(f"dropped {n_loc} localizer image(s) mixed into the series")
    if len(frames) < min_slices:
        raise SkipScan(f"only {len(frames)} slice(s) (< {min_slices}): localizer or partial series")

    sizes = Counter((f.rows, f.cols) for f in frames)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({n})" for (r, c), n in sizes.most_common(4))
        raise InvalidScan(f"inconsistent slice sizes: {listed}")
    orient = np.stack([f.orientation for f in frames])
    if float(np.abs(orient - orient[0]).max()) > 1e-3:
        raise InvalidScan("inconsistent image orientation across slices")
    spacing = np.array([f.pixel_spacing for f in frames])
    if float(np.abs(spacing - spacing[0]).max()) > 1e-3 * float(np.abs(spacing[0]).max()) + 1e-6:
        raise InvalidScan("inconsistent pixel spacing across slices")
    px = (float(spacing[0, 0]), float(spacing[0, 1]))
    if not (0.0 < px[0] < 100.0 and 0.0 < px[1] < 100.0):
        raise InvalidScan(f"implausible pixel spacing {px[0]:g} x {px[1]:g} mm")

    row, col, normal = plane_axes(orient[0])
    check_axial(normal)

    with stage("sort"):
        positions = np.stack([f.position for f in frames])
        order = np.argsort(positions @ normal, kind="stable")
        frames = [frames[i] for i in order]
        positions = positions[order]

    rows, cols = frames[0].rows, frames[0].cols
    if rows * cols * len(frames) > _MAX_VOXELS:
        raise InvalidScan(f"series too large ({cols}x{rows}x{len(frames)} voxels)")
    meta_ds = datasets[frames[0].file_index]
    if meta_ds is None:  # known from discovery's facts: its header is read for the scan's meta alone
        meta_ds = read_dicom(ref.files[frames[0].file_index], stop_before_pixels=True)
    with stage("decode"):
        stack = _decode(ref, frames, datasets, sources, rows, cols)

    with stage("stack"):
        # Duplicate positions: identical pixels -> keep one (warning); different pixels -> InvalidScan.
        keep, n_dup = [], 0
        for group in duplicate_groups(positions @ normal):
            head = group[0]
            for other in group[1:]:
                if not np.array_equal(stack[head], stack[other]):
                    raise InvalidScan(
                        "two slices share a position but differ in pixels (mixed acquisitions?)"
                    )
                n_dup += 1
            keep.append(head)
        if n_dup:
            warnings.append(f"dropped {n_dup} duplicate slice(s) at repeated positions (identical pixels)")
            stack = stack[keep]
            positions = positions[keep]
        if len(keep) < min_slices:
            raise SkipScan(f"only {len(keep)} distinct slice position(s) (< {min_slices})")

        u, dist = stacking_line(positions, normal)
        cos = float(u @ normal)  # distances along the (tilted) stack -> perpendicular to the slices
        thick = np.array([np.nan if f.thickness is None else f.thickness for f in (frames[i] for i in keep)])
        plan = plan_stack(dist * cos, gap_tolerance=gap_tol, max_missing=max_missing, thickness=thick)
        warnings.extend(plan.warnings)
        if plan.targets is not None:
            stack = resample_slices(stack, dist * cos, plan.targets)
        tilt = tilt_degrees(u, normal)
        if abs(tilt) >= 0.5:
            warnings.append(
                f"gantry tilt {tilt:.1f} degrees (kept in a sheared affine; resampled to upright)"
            )
    affine = affine_ras(row, col, px, positions[0], u * (plan.step / cos))
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InvalidScan("degenerate voxel-to-world geometry")

    meta = _meta(meta_ds, ref, stack.shape[0], px, plan.step, tilt, warnings)
    return Volume(array=stack.transpose(2, 1, 0), affine=affine, meta=meta)


def _read_files(ref: SeriesRef, headers: list[Any]) -> tuple[list[Frame], list[Any], list[tuple]]:
    """Every file's frames: from discovery's :class:`SliceFacts` where it has them (no header parse here),
    else from the file's header (pixel data left on disk). Returns ``(frames, datasets, sources)`` where
    ``datasets[i]`` is file ``i``'s header (``None`` where facts stood in for it) and ``sources[i] = (path,
    offset of its pixel data element or None, its SliceFacts or None)``. A file's problem names the file."""
    frames: list[Frame] = []
    datasets: list[Any] = []
    sources: list[tuple] = []
    facts = ref.facts if ref.facts is not None and len(ref.facts) == len(ref.files) else None
    for i, path in enumerate(ref.files):
        known = facts[i] if facts is not None else None
        if known is not None:
            datasets.append(None)
            sources.append((path, known.offset, known))
            frames.append(known.frame)
            continue
        try:
            ds, offset, has_pixels = _read_header(path)
        except Exception as exc:  # name the file; read_series scrubs PHI out of the message
            why = _scrub(str(exc).replace(str(path), "<file>"), headers, ref)
            raise InvalidScan(f"{ref.name_of(path)}: unreadable DICOM: {type(exc).__name__}: {why}") from exc
        datasets.append(ds)
        sources.append((path, offset, None))
        if len(headers) < 3:
            headers.append(ds)
        check_skip(ds)
        try:
            frames.extend(frames_of(ds, i, has_pixels))
        except InvalidScan as exc:
            raise InvalidScan(f"{ref.name_of(path)}: {exc.reason}") from None
    return frames, datasets, sources


def _decode(
    ref: SeriesRef, frames: list[Frame], datasets: list[Any], sources: list[tuple], rows: int, cols: int
) -> np.ndarray:
    """Sorted frames -> ``(Z, rows, cols)`` HU stack, int16 when every rescale is integer and the values
    fit (exact), else float32. Uncompressed 16-bit files are read straight into the stack, one at a time;
    others are read whole with pydicom when their turn comes (multi-frame files once). A pixel data problem
    names its file."""
    cache: dict = {}
    full: dict[int, Any] = {}
    buffer = bytearray(rows * cols * 2)  # one slice's pixel bytes, reused (each slice is rescaled at once)

    def pixels(f: Frame) -> np.ndarray:
        path, offset, known = sources[f.file_index]
        try:
            if f.frame is None and offset is not None:
                ds = datasets[f.file_index]
                layout = known.layout if known is not None else native16_layout(ds)
                if layout is not None:
                    stamp = known.stamp if known is not None else None
                    raw = read_native16(path, offset, layout, rows, cols, buffer, stamp)
                    if raw is not None:
                        return raw
            if f.file_index not in full:
                ds = datasets[f.file_index]
                full[f.file_index] = ds if ds is not None and "PixelData" in ds else read_dicom(path)
            return stored_pixels(full[f.file_index], f.frame, rows, cols, cache)
        except InvalidScan as exc:
            raise InvalidScan(f"{ref.name_of(path)}: {exc.reason}") from None

    # decode one frame before allocating, so absurd header sizes fail on the real pixel data first
    raw = pixels(frames[0])
    exact = all(int16_rescale(f.slope, f.intercept) for f in frames)
    stack = np.empty((len(frames), rows, cols), dtype=np.int16 if exact else np.float32)
    for k, f in enumerate(frames):
        if k:
            raw = pixels(f)
        if not rescale_into(stack[k], raw, f.slope, f.intercept):  # HU beyond int16: go float32
            stack = stack.astype(np.float32)
            rescale_into(stack[k], raw, f.slope, f.intercept)
        if f.frame is None:  # release the file's bytes (and pydicom's cached pixel array) early
            full.pop(f.file_index, None)
            datasets[f.file_index] = None
    cache.clear()
    full.clear()
    datasets.clear()
    if stack.dtype.kind == "f" and not np.isfinite(stack).all():
        raise InvalidScan("pixel values are not finite after rescale")
    return stack


def _num(ds, keyword: str) -> float | None:
    try:
        v = ds.get(keyword, None)
        return None if v is None or str(v).strip() == "" else float(v)
    except Exception:  # a malformed optional tag is just absent
        return None


def _short(ds, keyword: str) -> str | None:
    try:
        v = ds.get(keyword, None)
    except Exception:  # a malformed optional tag is just absent
        return None
    if v is None:
        return None
    multi = not isinstance(v, (str, bytes)) and hasattr(v, "__iter__")
    text = ("\\".join(str(x) for x in v) if multi else str(v)).strip()
    return text[:64] or None


def _meta(ds, ref: SeriesRef, n: int, px, step: float, tilt: float, warnings: list[str]) -> dict[str, Any]:
    """De-identified facts (no names, IDs, dates, institutions, descriptions)."""
    sop = str(ds.get("SOPClassUID", ""))
    ts = getattr(ds, "file_meta", None)
    ts_uid = ts.get("TransferSyntaxUID", None) if ts is not None else None
    return {
        "source_kind": "dicom",
        "scan_id": ref.scan_id,
        "patient_id": ref.patient_id,
        "study_id": ref.study_id,
        "modality": "CT",
        "sop_class": CT_SOP_CLASSES.get(sop, "CT"),
        "transfer_syntax": uid_name(ts_uid) if ts_uid is not None else None,
        "n_slices": int(n),
        "n_files": ref.n_files,
        "pixel_spacing": [float(px[0]), float(px[1])],
        "slice_spacing": float(step),
        "slice_thickness": _num(ds, "SliceThickness"),
        "tilt_deg": round(tilt, 3),
        "manufacturer": _short(ds, "Manufacturer"),
        "model": _short(ds, "ManufacturerModelName"),
        "kernel": _short(ds, "ConvolutionKernel"),
        "kvp": _num(ds, "KVP"),
        "warnings": list(warnings),
    }
