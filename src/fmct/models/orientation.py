"""The axis order a network expects, from fmct's RAS+ model inputs, and its feature maps back to RAS.

fmct's model inputs are ``(B, C, X, Y, Z)`` whose axes point to the patient's Right, Anterior and Superior
(axis codes ``"RAS"``). A network trained elsewhere may expect other axis codes, e.g. CT-FM's
``Orientation(axcodes="SPL")``: first axis towards Superior, second towards Posterior, third towards Left.
:func:`from_ras` permutes and flips the spatial axes of a batch into those codes; :func:`to_ras` puts a
feature map computed in those codes back into RAS order, so that its tokens line up with fmct's brain mask.
"""

from __future__ import annotations

import torch

#: Axis code -> (RAS axis it runs along, whether it runs against that axis).
_CODES = {"R": (0, False), "L": (0, True), "A": (1, False), "P": (1, True), "S": (2, False), "I": (2, True)}


def parse_axcodes(codes: str) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """``"SPL"`` -> ``(perm, flips)``: target axis ``i`` is RAS axis ``perm[i]``, reversed when ``flips[i]``.

    Raises ``ValueError`` unless ``codes`` is three letters naming each of R/L, A/P, S/I once.
    """
    text = str(codes).upper()
    if len(text) != 3 or any(c not in _CODES for c in text):
        raise ValueError(
            f"axis codes must be 3 letters from R/L, A/P, S/I (e.g. 'RAS', 'SPL'), got {codes!r}"
        )
    perm = tuple(_CODES[c][0] for c in text)
    if sorted(perm) != [0, 1, 2]:
        raise ValueError(f"axis codes {codes!r} name one direction twice; use each of R/L, A/P, S/I once")
    return perm, tuple(_CODES[c][1] for c in text)  # type: ignore[return-value]


def from_ras(x: torch.Tensor, codes: str) -> torch.Tensor:
    """``(B, C, X, Y, Z)`` in RAS -> the same voxels with spatial axes in ``codes`` order (a view)."""
    perm, flips = parse_axcodes(codes)
    if perm == (0, 1, 2) and not any(flips):
        return x
    out = x.permute(0, 1, *(2 + p for p in perm))
    dims = [2 + i for i, f in enumerate(flips) if f]
    return out.flip(dims) if dims else out


def to_ras(f: torch.Tensor, codes: str) -> torch.Tensor:
    """Inverse of :func:`from_ras` for a feature map ``(B, D, a, b, c)`` computed in ``codes`` order."""
    perm, flips = parse_axcodes(codes)
    if perm == (0, 1, 2) and not any(flips):
        return f
    dims = [2 + i for i, fl in enumerate(flips) if fl]
    out = f.flip(dims) if dims else f
    inverse = [perm.index(axis) for axis in range(3)]
    return out.permute(0, 1, *(2 + i for i in inverse))
