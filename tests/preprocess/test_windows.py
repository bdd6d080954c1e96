import numpy as np
import torch

from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows


def test_window_edges_and_channel_order():
    hu = np.array([-1000.0, 0.0, 40.0, 80.0, 3000.0], dtype=np.float32)
    out = apply_windows(hu)
    assert out.shape == (3, 5) and out.dtype == np.float32
    # brain window (40, 80): 0 HU is the lower edge, 40 the middle, 80 the upper edge
    np.testing.assert_allclose(out[0], [0.0, 0.0, 0.5, 1.0, 1.0])
    # bone window (600, 2800): -800..2000
    np.testing.assert_allclose(out[2, 1], 800 / 2800, rtol=1e-6)


def test_numpy_and_torch_agree():
    hu = np.random.default_rng(0).uniform(-1100, 2500, size=(4, 5, 6)).astype(np.float32)
    a = apply_windows(hu, DEFAULT_WINDOWS)
    b = apply_windows(torch.from_numpy(hu), DEFAULT_WINDOWS).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
