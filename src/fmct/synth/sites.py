"""Acquisition sites of the synthetic cohort: one training distribution (``a``) and two external ones.

Each :class:`Site` describes how a scanner samples the same anatomy. Sites differ in slice thickness,
in-plane field of view (hence pixel spacing at a given matrix), noise, reconstruction kernel (blur or
sharpen), gantry tilt, streak artefacts, vendor tags and pixel encoding.

| site | role          | FOV mm  | slice mm | noise HU | kernel          | tilt deg | streaks | HU offset / cupping | encoding        |
|------|---------------|---------|----------|----------|-----------------|----------|---------|---------------------|-----------------|
| a    | training (ID) | 225-240 | 1.25     | 4        | standard (blur) | 0        | faint   | 0 / 2               | int16, b=-1024  |
| b    | external      | 245-260 | 5.0      | 3        | soft (blur)     | 0        | some    | +4 / 6              | uint16, b=-1024 |
| c    | external      | 205-220 | 2.5      | 9        | sharp (sharpen) | 12-20    | strong  | -3 / 10             | int16, b=0      |

HU offset = calibration drift of soft tissue (HU); cupping = beam-hardening dip at the centre of the head (HU).

At matrices below 256 the slice spacing is raised to at least the pixel spacing so small demo scans
stay small (e.g. ``size=64`` at site a gives ~3.6 mm slices).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """How one synthetic scanner acquires a head CT.

    Attributes:
        name: site key (``a``, ``b``, ``c``).
        description: one line for people.
        fov_mm: in-plane field of view range (drawn per scan); pixel spacing = FOV / matrix.
        slice_thickness_mm: reconstructed slice thickness (slab width of the slice profile).
        coverage_mm: cranio-caudal coverage of the scan (number of slices = coverage / spacing).
        noise_hu: standard deviation of the image noise in HU (after the kernel).
        kernel_sigma_mm: Gaussian in-plane blur of the reconstruction kernel.
        sharpen: unsharp-mask amount applied after the blur (0 = none; sharp kernels > 0).
        tilt_deg: gantry tilt range (degrees, drawn per scan); 0 = no tilt.
        streak_hu: amplitude of posterior-fossa streak artefacts (beam hardening).
        hu_offset: calibration drift added to everything denser than air (HU).
        cupping_hu: beam-hardening cupping: the centre of the head reads this much lower than its rim.
        manufacturer / model / convolution_kernel: vendor tags written to DICOM.
        pixel_signed: PixelRepresentation 1 (int16) or 0 (uint16).
        rescale_intercept: DICOM RescaleIntercept (stored value = HU - intercept).
        instance_order: ``"ascending"`` (InstanceNumber 1 = lowest slice) or ``"descending"`` (1 = top).
    """

    name: str
    description: str
    fov_mm: tuple[float, float]
    slice_thickness_mm: float
    coverage_mm: float
    noise_hu: float
    kernel_sigma_mm: float
    sharpen: float
    tilt_deg: tuple[float, float]
    streak_hu: float
    hu_offset: float
    cupping_hu: float
    manufacturer: str
    model: str
    convolution_kernel: str
    pixel_signed: bool
    rescale_intercept: float
    instance_order: str
    kvp: float


#: The three sites. ``a`` is the training distribution; ``b`` and ``c`` are external (OOD).
SITES: dict[str, Site] = {
    "a": Site(
        name="a",
        description="training site: thin 1.25 mm slices, standard kernel, low noise, no tilt",
        fov_mm=(225.0, 240.0),
        slice_thickness_mm=1.25,
        coverage_mm=180.0,
        noise_hu=4.0,
        kernel_sigma_mm=0.5,
        sharpen=0.0,
        tilt_deg=(0.0, 0.0),
        streak_hu=4.0,
        hu_offset=0.0,
        cupping_hu=2.0,
        manufacturer="SYNTHETIC Vendor A",
        model="SynthScan 64",
        convolution_kernel="STANDARD",
        pixel_signed=True,
        rescale_intercept=-1024.0,
        instance_order="ascending",
        kvp=120.0,
    ),
    "b": Site(
        name="b",
        description="external: thick 5 mm slices, soft kernel, wide FOV, descending instance numbers",
        fov_mm=(245.0, 260.0),
        slice_thickness_mm=5.0,
        coverage_mm=180.0,
        noise_hu=3.0,
        kernel_sigma_mm=1.0,
        sharpen=0.0,
        tilt_deg=(0.0, 0.0),
        streak_hu=12.0,
        hu_offset=4.0,
        cupping_hu=6.0,
        manufacturer="SYNTHETIC Vendor B",
        model="Helix B16",
        convolution_kernel="H30s",
        pixel_signed=False,
        rescale_intercept=-1024.0,
        instance_order="descending",
        kvp=120.0,
    ),
    "c": Site(
        name="c",
        description="external: 2.5 mm slices, sharp kernel, noisy, tight FOV, 12-20 deg gantry tilt, streaks",
        fov_mm=(205.0, 220.0),
        slice_thickness_mm=2.5,
        coverage_mm=175.0,
        noise_hu=9.0,
        kernel_sigma_mm=0.4,
        sharpen=0.7,
        tilt_deg=(12.0, 20.0),
        streak_hu=30.0,
        hu_offset=-3.0,
        cupping_hu=10.0,
        manufacturer="SYNTHETIC Vendor C",
        model="Tomo C128",
        convolution_kernel="FC64",
        pixel_signed=True,
        rescale_intercept=0.0,
        instance_order="ascending",
        kvp=140.0,
    ),
}


def get_site(name: str) -> Site:
    """The :class:`Site` named ``name``; ``ValueError`` naming the known sites otherwise."""
    try:
        return SITES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown site {name!r}; known sites: {', '.join(sorted(SITES))}") from None
