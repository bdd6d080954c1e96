"""Predict findings for scans given as DICOM folders, NIfTI files or ``STORE::scan_id`` references.

Every input goes through the same path as training data: ``fmct.io.load_volume`` (the series selection
ingest makes) -> ``fmct.preprocess.preprocess`` with the preprocessing recorded in the model directory
-> ``fmct.preprocess.model_input.to_model_input`` -> the classifier. One entry per input::

    {"input", "scan_id", "patient_id", "study_id" (pseudonymous, DICOM and store scans),
     "status": "ok"|"failed"|"skipped", "probabilities": {finding: p},
     "model": {"name", "version"}, "preprocessing": {...}, "timings": {"read_s", "preprocess_s",
     "model_s", "saliency_s"}, "warnings": [...], "source": {"shape", "spacing_mm", "extent_mm"},
     "saliency": {...}}     # or {"input", "status", "error"} when the scan cannot be used

``input`` names the input by its own file/folder name (or a salted hash), never by the path above it:
folder names often hold patient names.

Saliency maps are written for the findings the model calls positive (or those named): a PNG montage and a 4D
NIfTI per finding (:mod:`fmct.infer.saliency_io`), in a folder named by the scan's pseudonymous id.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmct.device import inference_autocast, module_device, place
from fmct.io import load_volume
from fmct.io.errors import ScanProblem
from fmct.io.sources import SourceNamer
from fmct.io.volume import Volume
from fmct.preprocess.model_input import model_input_for, preprocess_config_of
from fmct.preprocess.windows import DEFAULT_WINDOWS

STORE_SEP = "::"

#: Thresholds for "outside what the model saw" warnings.
MAX_SLICE_MM = 5.0
MIN_FOV_MM = 140.0
MIN_COVERAGE_MM = 60.0
MIN_HEAD_MM = 100.0
MAX_INPLANE_RATIO = 3.0


# ---------------------------------------------------------------------------------------------- model


def resolve_model(model: Any) -> Any:
    """A loaded model, or a model directory loaded with ``fmct.models.hub.load_model``."""
    if isinstance(model, (str, Path)):
        from fmct.models.hub import load_model

        return load_model(Path(model))
    return model


def model_info(model: Any) -> dict[str, Any]:
    """``{"name", "version"}`` of a loaded model (from attributes or its ``config`` dict)."""
    cfg = getattr(model, "config", None)
    cfg = cfg if isinstance(cfg, dict) else {}
    name = getattr(model, "name", None) or cfg.get("name") or type(model).__name__
    version = getattr(model, "version", None) or cfg.get("version") or cfg.get("fmct_version")
    return {"name": str(name), "version": None if version is None else str(version)}


def model_preprocessing(model: Any) -> dict[str, Any]:
    """The model's preprocessing dict with ``input_size`` and ``windows`` filled in."""
    pre = dict(getattr(model, "preprocessing", None) or {})
    if "input_size" not in pre:
        img = model.backbone.config.img_size
        pre["input_size"] = int(img if isinstance(img, int) else img[0])
    pre.setdefault("windows", [list(w) for w in DEFAULT_WINDOWS])
    pre.setdefault("spacing", 1.0)
    return pre


def probabilities(model: Any, x: torch.Tensor) -> np.ndarray:
    """``(B, C, S, S, S) -> (B, L)`` probabilities (``predict_proba`` if present, else sigmoid(logits)),
    computed where the model is: on CUDA under bf16 autocast, on the CPU in fp32
    (:func:`fmct.device.inference_autocast`)."""

    dev = module_device(model)
    with torch.inference_mode(), inference_autocast(dev):
        x = x.to(dev)
        fn = getattr(model, "predict_proba", None)
        p = fn(x) if callable(fn) else torch.sigmoid(model(x))
    if isinstance(p, torch.Tensor):
        p = p.detach().float().cpu().numpy()
    return np.asarray(p, dtype=np.float64).reshape(x.shape[0], -1)


# ---------------------------------------------------------------------------------------------- inputs


def _is_store_ref(spec: str) -> bool:
    return STORE_SEP in spec and not Path(spec).exists()


def input_namer(spec: str, salt: str | None = None) -> Any:
    """The :class:`fmct.io.sources.SourceNamer` of one input (its own name, or a salted hash)."""

    root = spec.rsplit(STORE_SEP, 1)[0] if _is_store_ref(spec) else spec
    return SourceNamer([root], salt)


def input_name(spec: str, salt: str | None = None) -> str:
    """How an input is named in results and on the console: its own file/folder name (``STORE::scan_id``
    as the store folder's name and the scan id), or a salted hash; never the path above it."""
    namer = input_namer(spec, salt)
    if _is_store_ref(spec):
        root, scan_id = spec.rsplit(STORE_SEP, 1)
        return f"{namer(root)}{STORE_SEP}{scan_id}"
    return namer(spec)


def read_input(spec: str, series: str = "error", namer: Any = None) -> tuple[Volume, bool]:
    """Load one input. Returns ``(volume, already_preprocessed)``.

    ``spec``: a NIfTI file, a DICOM folder, or ``STORE::scan_id`` (a scan from an ``fmct ingest`` store).
    ``series``: a folder with several usable CT series is an error (``"error"``) or gives its thinnest
    (``"thinnest"``, noted in the warnings); see :func:`fmct.io.load_volume`. ``namer`` names paths in
    error messages (default: :func:`input_namer`).
    Raises ``fmct.io.errors.ScanProblem`` (skipped/failed series) or ``FileNotFoundError``.
    """
    namer = namer or input_namer(spec)
    if _is_store_ref(spec):
        root, scan_id = spec.rsplit(STORE_SEP, 1)
        from fmct.store import ScanStore

        store = ScanStore(Path(root))
        if scan_id not in set(store.scan_ids):
            raise FileNotFoundError(f"scan {scan_id!r} is not an ok scan of store {namer(root)}")
        vol = store.load(scan_id)
        vol.meta.setdefault("scan_id", scan_id)
        return vol, True
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{namer(spec)}: no such file or folder")

    return load_volume(path, multiple=series, namer=namer), False


def world_extent(vol: Volume) -> np.ndarray:
    """Extent in mm of the volume's bounding box along world R, A, S (voxel corners included)."""
    shape = np.asarray(vol.shape, dtype=np.float64)
    corners = np.array(
        [
            [a, b, c]
            for a in (-0.5, shape[0] - 0.5)
            for b in (-0.5, shape[1] - 0.5)
            for c in (-0.5, shape[2] - 0.5)
        ]
    )
    world = corners @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    return world.max(0) - world.min(0)


def scan_warnings(
    source: Volume, processed: Volume | None, pre: dict[str, Any], from_store: bool
) -> list[str]:
    """Reasons the scan may be outside what the model saw (slice thickness, field of view, spacing)."""
    warns = [str(w) for w in source.meta.get("warnings", []) or []]
    spacing = sorted(source.spacing)
    if from_store:  # the stored grid is already resampled: judge the original acquisition when recorded
        recorded = (source.meta.get("preprocess") or {}).get("source_spacing_mm")
        if recorded and len(recorded) == 3:
            spacing = sorted(float(s) for s in recorded)
    thickness = float(source.meta.get("slice_thickness") or spacing[-1])
    if thickness > MAX_SLICE_MM:
        warns.append(
            f"slice thickness {thickness:.1f} mm > {MAX_SLICE_MM:g} mm: the model saw thin-slice scans"
        )
    model_mm = float(pre.get("spacing", 1.0) or 1.0)
    inplane = spacing[1]
    if inplane > MAX_INPLANE_RATIO * model_mm:
        warns.append(
            f"in-plane spacing {inplane:.2f} mm is much coarser than the model's {model_mm:g} mm grid"
        )
    if not from_store:
        ext = world_extent(source)
        if min(ext[0], ext[1]) < MIN_FOV_MM:
            warns.append(
                f"field of view {ext[0]:.0f} x {ext[1]:.0f} mm (R-L x A-P) is too small to hold a whole head"
            )
        if ext[2] < MIN_COVERAGE_MM:
            warns.append(f"scan covers only {ext[2]:.0f} mm craniocaudally: partial head coverage")
    if processed is not None:
        head = np.asarray(processed.shape) * np.asarray(processed.spacing)
        if head.max() < MIN_HEAD_MM:
            warns.append(f"head region after cropping is only {head.max():.0f} mm: not a whole head?")
    return warns


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "scan"


# ---------------------------------------------------------------------------------------------- predict


def predict_one(
    model: Any,
    spec: str,
    saliency_dir: str | Path | None = None,
    saliency_findings: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    name: str | None = None,
    series: str = "error",
    salt: str | None = None,
    positive_at: float | Mapping[str, float] = 0.5,
    mask_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Predict one input; never raises for a bad scan (the entry gets ``"error"``). ``"input"`` is
    :func:`input_name` (``salt``: a salted hash, and so is a NIfTI file's scan id). Saliency: see
    :func:`predict_paths`."""

    labels = list(model.labels)
    pre = model_preprocessing(model)
    namer = input_namer(str(spec), salt)
    entry: dict[str, Any] = {"input": input_name(str(spec), salt), "model": model_info(model)}
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        source, from_store = read_input(str(spec), series, namer)
        timings["read_s"] = time.perf_counter() - t0
        if namer.hashed and source.meta.get("source_kind") == "nifti":  # its id is its file name
            source.meta["scan_id"] = namer.hash(spec)
        entry["scan_id"] = source.meta.get("scan_id")
        entry.update({k: source.meta[k] for k in ("patient_id", "study_id") if source.meta.get(k)})
        t0 = time.perf_counter()
        reuse = _already_matches(source, preprocess_config_of(pre), from_store)
        x, grid_affine, processed = model_input_for(source, pre, reuse=reuse)
        timings["preprocess_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        probs = probabilities(model, x[None])[0]
        timings["model_s"] = time.perf_counter() - t0
    except ScanProblem as exc:
        error = namer.scrub(exc.reason, [spec])
        entry.update(status=getattr(exc, "status", "failed"), error=error, timings=timings)
        return entry
    except Exception as exc:  # one bad input must not stop the others
        error = namer.scrub(f"{type(exc).__name__}: {exc}", [spec])
        entry.update(status="failed", error=error, timings=timings)
        return entry
    entry.update(
        status="ok",
        probabilities={f: float(p) for f, p in zip(labels, probs, strict=True)},
        preprocessing=pre,
        warnings=scan_warnings(source, processed, pre, from_store),
        source={
            "shape": list(source.shape),
            "spacing_mm": [round(s, 4) for s in source.spacing],
            "extent_mm": [round(float(e), 1) for e in world_extent(source)],
        },
    )
    if saliency_dir is not None:
        t0 = time.perf_counter()
        try:
            from fmct.infer.saliency_io import write_saliency

            # the pseudonymous scan id names the folder (input folder names may carry patient names)
            sub = Path(saliency_dir) / _safe_name(str(entry.get("scan_id") or name or Path(spec).stem))
            entry["saliency"] = write_saliency(
                model,
                x,
                grid_affine,
                processed,
                labels,
                sub,
                findings=saliency_findings,
                methods=methods,
                probs=entry["probabilities"],
                positive_at=positive_at,
                lesions=_lesion_mask(mask_dir, entry.get("scan_id"), entry["warnings"]),
            )
        except Exception as exc:
            entry["warnings"].append(f"saliency failed: {type(exc).__name__}: {exc}")
        timings["saliency_s"] = time.perf_counter() - t0
    entry["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return entry


def _lesion_mask(mask_dir: str | Path | None, scan_id: str | None, warnings: list[str]) -> Any:
    """The scan's finding mask ``mask_dir/<scan_id>.nii.gz`` (``fmct synth --masks``), or None (noted in
    ``warnings`` when a folder was given but holds no mask of this scan)."""
    if mask_dir is None:
        return None
    path = Path(mask_dir) / f"{scan_id}.nii.gz"
    if not scan_id or not path.is_file():
        warnings.append(f"no lesion mask {path.name} in the mask folder: no outline drawn")
        return None
    from fmct.synth.masks import read_mask

    return read_mask(path)


def _already_matches(vol: Volume, cfg: Any, from_store: bool) -> bool:
    """A store scan is reused as is when its grid already has the model's spacing."""
    if not from_store:
        return False
    target = float(getattr(cfg, "spacing", 1.0))
    return bool(np.allclose(vol.spacing, target, atol=1e-3))


def predict_paths(
    model: Any,
    inputs: Sequence[str | Path],
    saliency_dir: str | Path | None = None,
    saliency_findings: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    series: str = "error",
    salt: str | None = None,
    device: Any = None,
    positive_at: float | Mapping[str, float] = 0.5,
    mask_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Predict every input (see module docstring for the entry format), with one model load.

    Args:
        model: a loaded ``ClassifierModel`` (or its directory).
        inputs: NIfTI files, DICOM folders or ``STORE::scan_id``.
        saliency_dir: write saliency maps here, one folder per scan (named by its scan id) with a PNG
            montage and a 4D NIfTI per explained finding (:mod:`fmct.infer.saliency_io`).
        saliency_findings: findings to explain (default: those with probability >= ``positive_at``).
        positive_at: the probability from which a finding is positive (explained by default), or one per
            finding (a model's operating thresholds).
        mask_dir: a folder of finding masks ``<scan_id>.nii.gz`` (``fmct synth --masks``): drawn as
            outlines on the montages, and each map scored against them (pointing game, mass share).
        methods: saliency methods (default :data:`fmct.infer.saliency.METHODS`).
        on_done: called with each entry as it finishes (progress bars).
        series: ``"error"`` or ``"thinnest"``: what a folder holding several usable CT series gives.
        salt: name inputs by a salted hash (see :func:`input_name`); default: by their own name.
        device: run the model there (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; a loaded model is
            moved); None: where the model is. Probabilities under bf16 autocast on CUDA, fp32 on the CPU;
            saliency in fp32.
    """

    model = resolve_model(model)
    if hasattr(model, "eval"):
        model.eval()
    place(model, device)
    results = []
    used: set[str] = set()
    for i, spec in enumerate(inputs):
        text = input_name(str(spec), salt)
        base = text.rsplit(STORE_SEP, 1)[1] if STORE_SEP in text else Path(text).name
        name = _safe_name(base.removesuffix(".gz").removesuffix(".nii"))
        if name in used:
            name = f"{name}_{i}"
        used.add(name)
        entry = predict_one(
            model, str(spec), saliency_dir, saliency_findings, methods, name=name, series=series, salt=salt,
            positive_at=positive_at, mask_dir=mask_dir,
        )  # fmt: skip
        results.append(entry)
        if on_done is not None:
            on_done(entry)
    return results
