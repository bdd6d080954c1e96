"""Small synthetic DICOM CT series with known HU and geometry, written with pydicom."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def hu_pattern(cols: int, rows: int, z_mm: np.ndarray) -> np.ndarray:
    """Known HU ``(X, Y, Z)``: linear in column, row and slice position (so interpolation is exact)."""
    i = np.arange(cols)[:, None, None]
    j = np.arange(rows)[None, :, None]
    return (3 * i + 5 * j + 4 * np.asarray(z_mm)[None, None, :] - 500).astype(np.float64)


@dataclass
class Series:
    """A written series: its folder, files (in slice order), expected HU ``(X, Y, Z)`` and RAS affine."""

    folder: Path
    files: list[Path]
    hu: np.ndarray
    affine: np.ndarray
    series_uid: str
    extra: dict = field(default_factory=dict)


def base_dataset(series_uid: str, study_uid: str, *, modality="CT", sop=CT_IMAGE, big_endian=False):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian if big_endian else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SOPClassUID = sop
    ds.Modality = modality
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PAT-0001"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC123"
    ds.InstitutionName = "General Hospital"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Manufacturer = "ACME"
    ds.ConvolutionKernel = "H30s"
    ds.SliceThickness = "2.5"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def set_pixels(ds, stored: np.ndarray, big_endian: bool = False) -> None:
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.astype(">i2" if big_endian else "<i2").tobytes()


def save(ds, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    return path


class SeriesFactory:
    """Writes series into ``tmp_path``; every option keeps the HU pattern known."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def ct(
        self,
        n: int = 20,
        rows: int = 32,
        cols: int = 32,
        *,
        dz: float = 2.5,
        z_mm: np.ndarray | None = None,
        pixel_spacing: tuple[float, float] = (0.8, 0.7),
        origin: tuple[float, float, float] = (-12.0, -20.0, 30.0),
        row_cos=(1.0, 0.0, 0.0),
        col_cos=(0.0, 1.0, 0.0),
        stack_dir=None,
        rescale: list[tuple[float, float]] | None = None,
        shuffle_seed: int | None = 0,
        modality: str = "CT",
        sop: str = CT_IMAGE,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        big_endian: bool = False,
        folder: Path | None = None,
    ) -> Series:
        """``n`` slices at distances ``z_mm`` (default ``k*dz``) along ``stack_dir`` (default the normal).

        Files get random names and InstanceNumbers that do not follow position (``shuffle_seed``).
        """
        from pydicom.uid import generate_uid

        self.count += 1
        folder = folder or self.root / f"series{self.count}"
        folder.mkdir(parents=True, exist_ok=True)
        series_uid, study_uid = generate_uid(), generate_uid()
        z = np.arange(n) * dz if z_mm is None else np.asarray(z_mm, float)
        row_v, col_v = np.array(row_cos, float), np.array(col_cos, float)
        normal = np.cross(row_v, col_v)
        sdir = normal if stack_dir is None else np.asarray(stack_dir, float)
        hu = hu_pattern(cols, rows, z)
        rng = np.random.default_rng(shuffle_seed if shuffle_seed is not None else 0)
        names = rng.permutation(len(z)) if shuffle_seed is not None else np.arange(len(z))
        instance = rng.permutation(len(z)) + 1 if shuffle_seed is not None else np.arange(len(z)) + 1
        files = []
        for k in range(len(z)):
            slope, intercept = rescale[k % len(rescale)] if rescale else (1.0, -1024.0)
            ds = base_dataset(series_uid, study_uid, modality=modality, sop=sop, big_endian=big_endian)
            ds.ImageType = list(image_type)
            ds.InstanceNumber = int(instance[k])
            pos = np.asarray(origin) + z[k] * sdir
            ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_v, *col_v)]
            ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
            ds.RescaleSlope = f"{slope:g}"
            ds.RescaleIntercept = f"{intercept:g}"
            stored = np.rint((hu[:, :, k].T - intercept) / slope).astype(np.int16)
            hu[:, :, k] = stored.T * slope + intercept  # what the file really holds
            set_pixels(ds, stored, big_endian)
            files.append(save(ds, folder / f"IM{self.count}_{int(names[k]):05d}"))
        step = (z[-1] - z[0]) / (len(z) - 1) if len(z) > 1 else dz
        m = np.eye(4)
        m[:3, 0] = row_v * pixel_spacing[1]
        m[:3, 1] = col_v * pixel_spacing[0]
        m[:3, 2] = sdir * step
        m[:3, 3] = np.asarray(origin) + z[0] * sdir
        return Series(folder, files, hu.astype(np.float32), LPS_TO_RAS @ m, series_uid)


@pytest.fixture
def factory(tmp_path: Path) -> SeriesFactory:
    return SeriesFactory(tmp_path)


@pytest.fixture
def recording_dataset():
    """``record(source) -> (dataset, seen)``: a pydicom copy of ``source`` (its File Meta too) that adds the
    keyword of every element read through ``get`` to the set ``seen`` (pydicom itself asks for the charset)."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.dataset import Dataset

    def record(source):
        seen: set = set()

        class Recorder(Dataset):
            def get(self, key, default=None):
                seen.add(key if isinstance(key, str) else keyword_for_tag(key))
                return super().get(key, default)

        ds = Recorder()
        ds.update(source)
        if "file_meta" in source.__dict__:
            ds.file_meta = source.file_meta
        return ds, seen

    return record


REAL_PHILIPS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "dcm_qa_ct" / "Philips" / "S21570"
)


@pytest.fixture
def mixed(factory, tmp_path) -> list[Path]:
    """Discovery inputs: several series (two in one folder), a non-DICOM file, a truncated DICOM file, NIfTI
    files and, when the real data is present, a Philips scout, a secondary capture and their DICOMDIR indexes."""
    root = tmp_path / "mixed"
    factory.ct(n=12, folder=root / "p1" / "a")
    factory.ct(n=9, folder=root / "p1" / "a", rescale=[(1.0, -1024.0), (0.5, -1000.0)])
    factory.ct(n=7, folder=root / "p2" / "deep" / "b", big_endian=True)
    factory.ct(n=5, folder=root / "p3", modality="MR")
    (root / "notes.txt").write_text("not an image")
    whole = factory.ct(n=2, folder=tmp_path / "spare").files[0].read_bytes()
    (root / "p2" / "truncated.dcm").write_bytes(whole[:300])
    (root / "scan.nii.gz").write_bytes(b"\x1f\x8b not read")
    (root / "p1" / "other.nii").write_bytes(b"not read either")
    inputs = [root]
    if REAL_PHILIPS.is_dir():
        inputs += [REAL_PHILIPS / "S1000", REAL_PHILIPS / "S4010"]
    return inputs


@pytest.fixture
def facts_key():
    """``key(facts) -> str | None``: a comparable form of a :class:`SliceFacts` (its frame holds numpy arrays)."""
    import dataclasses

    def key(facts) -> str | None:
        if facts is None:
            return None
        fields = {**dataclasses.asdict(facts), **dataclasses.asdict(facts.frame)}
        return repr({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in sorted(fields.items())})

    return key
