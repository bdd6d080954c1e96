"""Network input orientation: fmct's RAS cubes into other axis codes (as nibabel reorients them) and back."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from fmct.models.orientation import from_ras, parse_axcodes, to_ras


@pytest.mark.parametrize("codes", ["RAS", "SPL", "LPS", "PIR", "ILA"])
def test_from_ras_matches_nibabel_reorientation_and_to_ras_inverts_it(codes: str) -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(1, 2, 3, 4, 5)
    orientations = nib.orientations
    ornt = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), orientations.axcodes2ornt(codes))
    expected = np.stack([orientations.apply_orientation(c, ornt) for c in x[0].numpy()])
    y = from_ras(x, codes)
    np.testing.assert_array_equal(y[0].numpy(), expected)
    assert torch.equal(to_ras(y, codes), x)


def test_spl_puts_superior_first_and_reverses_anterior_and_right() -> None:
    x = torch.zeros(1, 1, 3, 4, 5)
    x[0, 0, 0, 3, 4] = 1.0  # RAS index: leftmost, most anterior, most superior voxel
    y = from_ras(x, "spl")
    assert y.shape == (1, 1, 5, 4, 3) and y[0, 0, 4, 0, 2] == 1.0


@pytest.mark.parametrize("bad", ["RA", "RAR", "XYZ", "RLS"])
def test_bad_axis_codes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="axis codes"):
        parse_axcodes(bad)
