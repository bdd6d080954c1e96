"""One config schema: the sections that configure one object take its defaults, and the object is built from
the section (``model`` -> ``ViT3DConfig``, ``optim`` -> ``SSLSchedules``); checks name the config key."""

from __future__ import annotations

import math

import pytest

from fmct.models.vit3d import ViT3DConfig
from fmct.ssl.meta_arch import vit_from_model_config
from fmct.train.config import resolve_config
from fmct.train.schedules import SSLSchedules


def test_the_default_model_section_builds_the_default_vit() -> None:
    cfg = resolve_config(None)
    built = ViT3DConfig.from_section(cfg["model"], cfg["data"]["global_size"])
    assert built == ViT3DConfig(img_size=cfg["data"]["global_size"])
    vit = vit_from_model_config(cfg["model"], cfg["data"]["global_size"])
    assert (vit.embed_dim, len(vit.blocks)) == (ViT3DConfig.embed_dim, ViT3DConfig.depth)


def test_the_optim_section_drives_the_schedules(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 40\noptim:\n  lr: 0.002\n  warmup_steps: 4\n")
    cfg = resolve_config(path, ["optim.min_lr=0"])
    s = SSLSchedules.from_config(cfg)
    assert (s.total_steps, s.warmup_steps, s.lr, s.min_lr) == (40, 4, 0.002, 0.0)
    assert math.isclose(s.values(2)["lr"], 0.001) and math.isclose(s.values(4)["lr"], 0.002)
    assert s.values(40)["lr"] == 0.0
    assert SSLSchedules.from_config(resolve_config(None, ["schedule_steps=7"])).total_steps == 7


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("model.pos_embed=rope", r"config key 'model': pos_embed must be 'sincos' or 'learned'"),
        (
            "data.global_size=60",
            r"config key 'model': img_size \(60, 60, 60\) is not divisible by patch_size",
        ),
    ],
)
def test_the_vit_checks_run_when_the_config_is_resolved(override, match) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_config(None, [override])


def test_a_file_that_is_not_a_mapping_is_named(tmp_path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml: a config file must hold a mapping"):
        resolve_config(path)
