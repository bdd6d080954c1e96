"""Suite-wide settings: one torch thread per test worker (pytest -n 2 uses both cores), headless plots."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
