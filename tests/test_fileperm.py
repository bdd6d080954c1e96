"""Files written atomically through temporary files get the umask's mode, not mkstemp's 0600."""

import os
import stat

import torch

from fmct.models.hub import save_pretrained
from fmct.models.vit3d import ViT3D, ViT3DConfig


def test_model_directory_follows_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        vit = ViT3D(ViT3DConfig(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2))
        prep = {"spacing": 1.0, "windows": [[40, 80], [80, 200], [600, 2800]], "input_size": 16}
        out = save_pretrained(vit, tmp_path / "m", kind="backbone", preprocessing=prep)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert torch.is_tensor(next(iter(vit.state_dict().values())))
