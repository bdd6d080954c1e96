import pytest

from fmct.config import apply_overrides, load_config, save_config


def test_overrides_parse_types_and_nested_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 10\noptim:\n  lr: 0.001\n  betas: [0.9, 0.99]\nname: demo\n")
    cfg = load_config(path, ["max_steps=30", "optim.lr=5e-4", "optim.betas=[0.8, 0.9]", "name=x y"])
    assert cfg["max_steps"] == 30
    assert cfg["optim"]["lr"] == pytest.approx(5e-4)
    assert cfg["optim"]["betas"] == [0.8, 0.9]
    assert cfg["name"] == "x y"


def test_unknown_key_and_bad_syntax_raise():
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides({"a": 1}, ["b=2"])
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides({"a": {"b": 1}}, ["a.c=2"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({"a": 1}, ["a"])


def test_override_of_the_wrong_kind_names_the_key():
    cfg = {"max_steps": 100, "optim": {"lr": 1e-3}, "dino": {"koleo": True}, "labels": None, "ls": 1e-5}
    with pytest.raises(ValueError, match="'max_steps' needs a number .*, got 'abc'"):
        apply_overrides(cfg, ["max_steps=abc"])
    with pytest.raises(ValueError, match="'dino.koleo' is true/false"):
        apply_overrides(cfg, ["dino.koleo=1"])
    with pytest.raises(ValueError, match="needs a number"):
        apply_overrides(cfg, ["optim.lr=true"])
    out = apply_overrides(cfg, ["optim.lr=2", "max_steps=1e3", "labels=x.csv", "dino.koleo=false"])
    assert out["optim"]["lr"] == 2 and out["max_steps"] == 1000 and out["labels"] == "x.csv"
    assert out["dino"]["koleo"] is False and isinstance(out["max_steps"], int)
    assert apply_overrides(cfg, ["ls=null"])["ls"] is None
    # a numeric key takes a list of numbers too (e.g. an anisotropic patch size)
    assert apply_overrides(cfg, ["max_steps=[8, 8, 4]"])["max_steps"] == [8, 8, 4]
    with pytest.raises(ValueError, match="needs a number"):
        apply_overrides(cfg, ["max_steps=[8, x]"])


def test_defaults_merge_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\n")
    cfg = load_config(path, defaults={"optim": {"lr": 1.0, "wd": 0.05}, "seed": 0})
    assert cfg == {"optim": {"lr": 0.1, "wd": 0.05}, "seed": 0}
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
