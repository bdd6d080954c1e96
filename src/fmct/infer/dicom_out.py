"""`fmct predict --dicom-out DIR`: the PACS-facing objects of each predicted DICOM series.

For every input series predicted ``ok``, ``DIR/<scan_id>/`` receives (written atomically):

* ``sr.dcm``: the findings as a Comprehensive 3D SR (:mod:`fmct.infer.dicom_sr`);
* ``seg.dcm`` (with ``--saliency``): the positive findings' saliency maps as a Segmentation with
  FRACTIONAL segments overlaying the source series (:mod:`fmct.infer.dicom_seg`). Each segment holds the
  finding's class-specific map (``grad_rollout``, else ``grad_x_input``; the attention rollout when only
  that was computed), read back from the NIfTI heat maps written on the source grid.

Both copy the source's patient and study modules: they are the only fmct outputs that carry patient
identifiers, and the folder is named by the pseudonymous scan id. Only DICOM inputs can have them: a NIfTI
file or a store scan has no study to file them with (:func:`dicom_out_problem`). A series whose objects
cannot be made gets a warning in its result entry; the others are still written.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmct.fileperm import as_umask
from fmct.infer.dicom_content import ModelFacts
from fmct.infer.dicom_sr import findings_sr
from fmct.io.dicom_source import SourceSeries, read_source_series, scrub_phi, series_by_scan_id
from fmct.io.nifti import is_nifti
from fmct.io.sources import SourceNamer

#: Saliency methods a SEG segment is taken from, in order of preference (class-specific first).
SEG_METHODS = ("grad_rollout", "grad_x_input", "attention")


def dicom_out_problem(
    inputs: Sequence[str | os.PathLike],
    model: Any,
    thresholds: Any = None,
    salt: str | None = None,
) -> str | None:
    """Why ``--dicom-out`` cannot be used (an input that is a NIfTI file or a store scan, thresholds that
    are not probabilities), or ``None``. ``salt`` names inputs by a salted hash."""
    from fmct.infer.predict import STORE_SEP, input_name

    if thresholds is not None and not isinstance(thresholds, dict):
        return (
            f'the model\'s "thresholds" must map findings to probabilities, got {type(thresholds).__name__}'
        )
    try:
        ModelFacts.of(model, thresholds)
    except ValueError as exc:
        return f"the model's {exc}"

    for spec in inputs:
        text, path = str(spec), Path(spec)
        what = None
        if STORE_SEP in text and not path.exists():
            what = "a scan of an ingest store"
        elif path.is_file() and is_nifti(path):
            what = "a NIfTI file"
        if what:
            return (
                f"--dicom-out needs DICOM series as inputs (the objects are filed with the source study); "
                f"{input_name(text, salt)} is {what}"
            )
    return None


def save_dataset(ds: Any, path: str | os.PathLike) -> Path:
    """Write a DICOM dataset as a Part 10 file atomically (temporary file + ``os.replace``)."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.save_as(tmp, enforce_file_format=True)
        as_umask(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def saliency_maps(
    entry: dict[str, Any], findings: Sequence[str]
) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """finding -> ``(method, heat (X, Y, Z), affine)`` from a predict entry's saliency NIfTI files, for those
    of ``findings`` that saliency explained (the preferred map of :data:`SEG_METHODS`)."""
    import nibabel as nib

    sal = entry.get("saliency") or {}
    out = {}
    explained = sal.get("findings") or {}
    for finding in (f for f in findings if f in explained):  # --findings may have left some out
        info = explained[finding]
        volumes = list(info.get("volumes") or [])  # the 4D NIfTI's methods, in volume order
        method = next((m for m in SEG_METHODS if m in volumes), None)
        if method is None or not info.get("nifti"):
            continue
        img = nib.load(info["nifti"])
        data = np.asarray(img.dataobj, dtype=np.float32)
        heat = data[..., volumes.index(method)] if data.ndim == 4 else data
        out[finding] = (method, heat / max(float(heat.max()), 1e-12), np.asarray(img.affine))
    return out


def write_series_objects(
    source: SourceSeries, entry: dict[str, Any], facts: ModelFacts, folder: Path
) -> dict[str, str | None]:
    """Write ``sr.dcm`` (and ``seg.dcm`` when the entry has saliency maps of positive findings) into
    ``folder``; returns ``{"sr": path, "seg": path or None}`` and notes why there is no SEG in
    ``entry["warnings"]``."""
    from fmct.infer.dicom_seg import saliency_seg

    probs = entry["probabilities"]
    sr = findings_sr(source, probs, facts, entry.get("warnings", []))
    written: dict[str, str | None] = {"sr": str(save_dataset(sr, folder / "sr.dcm")), "seg": None}
    if "saliency" not in entry:
        return written
    positive = facts.positive(probs)
    maps = saliency_maps(entry, positive)
    if not maps:
        why = "no finding reaches its operating threshold" if not positive else "no map of a positive finding"
        entry.setdefault("warnings", []).append(f"dicom-out: no SEG ({why})")
        return written
    written["seg"] = str(save_dataset(saliency_seg(source, maps, facts), folder / "seg.dcm"))
    return written


def write_dicom_outputs(
    model: Any,
    inputs: Sequence[str | os.PathLike],
    results: list[dict[str, Any]],
    out_dir: str | os.PathLike,
    thresholds: dict[str, float] | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    salt: str | None = None,
) -> None:
    """Write the DICOM objects of every ``ok`` entry of ``results`` (from ``predict_paths(model, inputs)``)
    under ``out_dir/<scan_id>/``; adds ``entry["dicom"] = {"sr", "seg"}`` (paths) and
    ``entry["timings"]["dicom_s"]``, or a ``"dicom-out failed: ..."`` warning when they cannot be made (never
    raises for one series). ``thresholds``: the operating thresholds the model directory records (see
    :meth:`ModelFacts.of`); ``on_done`` is called with each entry; ``salt``: warnings name input paths by a
    salted hash (as ``predict_paths(..., salt=)`` does), else by their own name.

    Raises:
        ValueError: a threshold is not a probability.
    """
    from fmct.infer.predict import STORE_SEP

    facts = ModelFacts.of(model, thresholds)
    roots = [str(p) for p in inputs if not (STORE_SEP in str(p) and not Path(p).exists())]
    namer = SourceNamer(roots, salt)
    series: dict[str, Any] | None = None
    for entry in results:
        if entry.get("status") == "ok":
            ref, source = None, None
            try:
                if series is None:  # headers of every DICOM input, read once
                    series = series_by_scan_id(roots)
                ref = series.get(str(entry.get("scan_id")))
                if ref is None:
                    raise ValueError("the input is not a DICOM series")
                t0 = time.perf_counter()
                source = read_source_series(ref)
                folder = Path(out_dir) / ref.scan_id  # pseudonymous: s- + hex
                entry["dicom"] = write_series_objects(source, entry, facts, folder)
                entry.setdefault("timings", {})["dicom_s"] = round(time.perf_counter() - t0, 4)
            except Exception as exc:  # one series' objects must not stop the others
                why = namer.scrub(scrub_phi(f"{type(exc).__name__}: {exc}", source or ref), roots)
                entry.setdefault("warnings", []).append(f"dicom-out failed: {why}")
        if on_done is not None:
            on_done(entry)
