"""Saliency maps as a DICOM Segmentation that overlays the source series (highdicom).

fmct writes saliency as a **Segmentation with FRACTIONAL segments** (not a secondary capture with burned-in
heat maps): one segment per positive finding, holding that finding's saliency map resampled onto every
source image plane, so a viewer overlays it on the original slices (tilted or unevenly spaced series
included: each frame is sampled on its own source plane through world coordinates). Values are the map's
relative relevance in ``[0, 1]`` stored as 0-255 with Segmentation Fractional Type PROBABILITY, the type
viewers draw as a heat map; they are **not** probabilities of the finding. Frames where every segment is
zero are omitted (highdicom's default); pixel data are JPEG 2000 lossless.

Each segment: label ``"<finding> saliency (<method>)"``, property category "Morphologically Abnormal
Structure", property type the finding's code (:mod:`fmct.infer.dicom_content`), algorithm AUTOMATIC with
the model's name, version, family "Artificial Intelligence" and parameters (method, operating threshold).
The SEG copies the source's patient and study modules and references every source SOP instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fmct.infer.dicom_content import ModelFacts, coding_schemes, finding_code, quiet_highdicom
from fmct.infer.resample import resample_to_grid
from fmct.io.dicom_source import SourceSeries

#: Series number of fmct's SEG series.
SEG_SERIES_NUMBER = 9902

SERIES_DESCRIPTION = "fmct saliency - NOT FOR CLINICAL USE"


def map_on_frames(source: SourceSeries, heat: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Sample a map on every source frame.

    Args:
        heat: ``(X, Y, Z)`` map (any grid: the source volume's, the model cube's).
        affine: ``(4, 4)`` voxel -> RAS mm of ``heat``.

    Returns:
        ``(F, rows, cols)`` float32, frame ``i`` on the plane of ``source.frames[i]`` (trilinear; 0 outside
        the map's grid).
    """
    frames = source.frames
    out = np.zeros((len(frames), frames[0].rows, frames[0].cols), dtype=np.float32)
    for i, f in enumerate(frames):
        plane = resample_to_grid(heat, affine, source.frame_affine(i), (f.cols, f.rows, 1))
        out[i] = plane[:, :, 0].T
    return out


def _segment(number: int, finding: str, method: str, facts: ModelFacts) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=f"{finding} saliency ({method})"[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=finding_code(finding),
        algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=facts.name[:64],
            family=codes.cid7162.ArtificialIntelligence,
            version=facts.version[:64],
            parameters={"saliency": method, "threshold": f"{facts.thresholds[finding]:g}"},
        ),
        tracking_id=f"fmct {finding} saliency",
        tracking_uid=hd.UID(),
    )


def saliency_seg(
    source: SourceSeries,
    maps: Mapping[str, tuple[str, np.ndarray, np.ndarray]],
    facts: ModelFacts,
    series_number: int = SEG_SERIES_NUMBER,
    transfer_syntax_uid: str = "1.2.840.10008.1.2.4.90",
) -> Any:
    """A ``highdicom.seg.Segmentation`` with one fractional segment per entry of ``maps``.

    Args:
        source: the source series (:func:`fmct.io.dicom_source.read_source_series`).
        maps: finding -> ``(method, heat (X, Y, Z) in [0, 1], affine (4, 4) voxel -> RAS mm)``, in segment
            order (e.g. the positive findings' maps as :mod:`fmct.infer.saliency_io` wrote them).
        facts: the model's name, version and thresholds.
        transfer_syntax_uid: JPEG 2000 Lossless by default: ~10x smaller than uncompressed (1.4 MB instead
            of 14.9 MB for one segment over a 58-slice 512 x 512 series) and faster to write; pass
            ``pydicom.uid.ExplicitVRLittleEndian`` for a PACS that accepts no compression.

    Raises:
        ValueError: ``maps`` is empty, or every map is zero on every source frame.
    """
    import highdicom as hd

    if not maps:
        raise ValueError("no saliency map to store")
    stacks, segments = [], []
    for number, (finding, (method, heat, affine)) in enumerate(maps.items(), start=1):
        stacks.append(np.clip(map_on_frames(source, heat, affine), 0.0, 1.0))
        segments.append(_segment(number, finding, method, facts))
    pixels = np.stack(stacks, axis=-1)  # (F, rows, cols, segments)
    if not pixels.any():
        raise ValueError("the saliency maps are zero on every source image")
    with quiet_highdicom():
        return hd.seg.Segmentation(
            source_images=source.datasets,
            pixel_array=pixels,
            segmentation_type="FRACTIONAL",
            fractional_type="PROBABILITY",
            max_fractional_value=255,
            segment_descriptions=segments,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="fmct",
            manufacturer_model_name=facts.name[:64],
            software_versions=facts.version[:64],
            device_serial_number="0",
            content_label="FMCT_SALIENCY",
            content_description="saliency maps - NOT FOR CLINICAL USE",
            series_description=SERIES_DESCRIPTION,
            content_qualification="RESEARCH",
            coding_schemes=coding_schemes(),
            transfer_syntax_uid=transfer_syntax_uid,
        )
