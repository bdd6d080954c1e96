"""`fmct demo` end to end at a micro size: every stage runs, the outputs exist, and a re-run reuses them."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from fmct.cli import app
from fmct.demo import CONFIG_DIR, DemoConfig, DemoConfigError, headline_rows, run_demo

#: micro sizes shared by both methods' configs (DINO adds its heads, MAE its decoder)
MICRO_TRAIN = [
    "max_steps=2", "batch_size=2", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "data.global_size=32", "data.num_workers=0", "optim.warmup_steps=1", "checkpoint_every=2", "monitor_every=2",
]  # fmt: skip

MICRO = DemoConfig(
    n_pool=4,
    n_labelled=24,
    n_ood=6,
    size=48,
    spacing=4.0,
    workers=1,
    pretrain_overrides=[
        *MICRO_TRAIN, "data.local_size=16", "dino.out_dim=32", "dino.ibot_out_dim=32", "dino.head_hidden_dim=32",
        "dino.head_bottleneck_dim=16",
    ],
    fractions=[1.0],
    seeds=[0],
    scratch_epochs=1,
    scratch_fractions=[1.0],
    n_boot=20,
    saliency_scans=2,
)  # fmt: skip


def test_demo_runs_every_stage_and_reuses_them(tmp_path):
    logs: list[str] = []
    summary = run_demo(tmp_path, MICRO, log=logs.append)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {r["model"] for r in headline_rows(report)} == {
        "ssl",
        "random-init",
        "resnet3d-scratch",
        "hu-histogram",
    }
    # the headline's paired differences: SSL minus every other model, at each fraction and test set
    diffs = {(d["vs"], d["labels"], d["test"]) for d in summary["differences"]}
    for other in ("random-init", "resnet3d-scratch", "hu-histogram"):
        assert (other, "1", "id") in diffs
    assert {r["test"] for r in summary["rows"]} <= {"id", "ood"} and summary["rows"]
    for kind in ("backbone", "classifier"):
        assert (tmp_path / "models" / kind / "model.safetensors").exists()
        assert (tmp_path / "models" / kind / "config.json").exists()
    assert (tmp_path / "report" / "report.html").exists()
    # the pretraining store is defaced and the backbone records the preprocessing predict must repeat
    cfg = json.loads((tmp_path / "models" / "classifier" / "config.json").read_text())
    assert cfg["preprocessing"]["deface"] is True and cfg["preprocessing"]["spacing"] == 4.0
    # the frozen probes and the exported classifier read the intracranial patch tokens
    assert cfg["head"]["pooling"] == "brain_max" and report["meta"]["config"]["feature"] == "brain_max"
    # the model cards say what the run knows: training data, and the classifier's evaluation
    card = (tmp_path / "models" / "classifier" / "README.md").read_text()
    assert "labelled scans of the fmct synthetic cohort" in card and "## Evaluation" in card
    assert "Not documented" not in (tmp_path / "models" / "backbone" / "README.md").read_text()

    # the classifier's saliency maps of ID test scans with findings, scored against their lesion masks
    sal = report["saliency"]
    assert 1 <= sal["scans"] <= 2 and sal["cases"] == len(sal["per_case"]) >= 1
    assert [r["method"] for r in sal["methods"]] == ["attention", "grad_rollout", "grad_x_input"]
    for r in sal["methods"]:
        assert r["hits"] == sum(c["scores"]["methods"][r["method"]]["hit"] for c in sal["per_case"])
    assert all(
        (tmp_path / "saliency" / c["scan_id"] / f"{c['finding']}.png").is_file() for c in sal["per_case"]
    )
    md, page = (
        (tmp_path / "report" / "report.md").read_text(),
        (tmp_path / "report" / "report.html").read_text(),
    )
    assert (
        "Saliency against the synthetic lesion masks" in md
        and "Saliency against the synthetic lesion masks" in page
    )
    assert (tmp_path / "report" / sal["example"]).is_file() and summary["saliency"]["cases"] == sal["cases"]

    logs.clear()
    run_demo(tmp_path, MICRO, log=logs.append)
    # synth, 2 ingests, pretrain, evaluate, models, saliency
    assert sum("reused" in m for m in logs) == 7, logs
    assert json.loads((tmp_path / "report" / "report.json").read_text())["saliency"]["cases"] == sal["cases"]


def test_demo_with_a_given_backbone_skips_pool_and_pretraining(tmp_path):
    """DemoConfig.backbone (the CLI passes the shipped weights): no pool, no pretraining; that backbone is
    evaluated and exported (here read with DemoConfig.feature brain_stats); a backbone that is not a model
    directory or an unknown readout is refused before any stage."""
    first = tmp_path / "first"
    run_demo(first, replace(MICRO, n_labelled=16, n_ood=4), log=lambda _: None)
    logs: list[str] = []
    backbone = first / "runs" / "ssl" / "model"
    cfg = replace(MICRO, backbone=str(backbone), feature="brain_stats")
    summary = run_demo(tmp_path / "second", cfg, log=logs.append)
    assert not any("pretrain" in m or "ingest-pool" in m for m in logs if "…" in m), logs
    assert not (tmp_path / "second" / "cohort" / "a_pool").exists()
    assert {r["model"] for r in summary["rows"]} >= {"ssl", "random-init"}
    exported = tmp_path / "second" / "models" / "backbone" / "model.safetensors"
    assert exported.read_bytes() == (backbone / "model.safetensors").read_bytes()
    clf = json.loads((tmp_path / "second" / "models" / "classifier" / "config.json").read_text())["head"]
    report = json.loads((tmp_path / "second" / "report" / "report.json").read_text())
    assert clf["pooling"] == "brain_stats" and report["meta"]["config"]["feature"] == "brain_stats"
    # another backbone in the same folder: the cohort and the store are reused, the evaluation is redone
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes((backbone / "model.safetensors").read_bytes())
    other_config = json.loads((backbone / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**other_config, "name": "another-backbone"}))
    logs.clear()
    run_demo(tmp_path / "second", replace(cfg, backbone=str(other)), log=logs.append)
    started = [m.replace("[bold]", "").replace("[/]", "") for m in logs if m.endswith("…")]
    assert started == ["evaluate …", "models …", "saliency …"], logs
    with pytest.raises(DemoConfigError, match="not a model directory"):
        run_demo(tmp_path / "third", replace(MICRO, backbone=str(tmp_path)), log=lambda _: None)
    with pytest.raises(DemoConfigError, match="unknown readout 'brain_mean'"):
        run_demo(tmp_path / "third", replace(cfg, feature="brain_mean"), log=lambda _: None)
    assert not (tmp_path / "third").exists()


def test_demo_with_the_mae_config(tmp_path):
    """`fmct demo --config configs/mae-demo-cpu.yaml`: the same chain with an MAE-pretrained backbone."""
    cfg = replace(
        MICRO,
        pretrain_config=str(CONFIG_DIR / "mae-demo-cpu.yaml"),
        pretrain_overrides=[*MICRO_TRAIN, "mae.decoder_dim=16", "mae.decoder_depth=1", "mae.decoder_heads=2"],
    )
    summary = run_demo(tmp_path, cfg, log=lambda _: None)
    backbone = json.loads((tmp_path / "models" / "backbone" / "config.json").read_text())
    assert backbone["training"]["method"] == "mae" and backbone["training"]["steps"] == 2
    assert {r["model"] for r in summary["rows"]} == {"ssl", "random-init", "resnet3d-scratch", "hu-histogram"}
    assert (tmp_path / "models" / "classifier" / "model.safetensors").exists()


def test_demo_cli_rejects_a_bad_override_before_any_stage(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--set", "max_steps=abc"])
    assert result.exit_code == 2 and "'max_steps' needs a number" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--set", "no_such_key=1"])
    assert result.exit_code == 2 and "unknown config key 'no_such_key'" in result.output


def test_demo_cli_feature_reaches_the_config_and_a_bad_one_is_refused_first(tmp_path, monkeypatch):
    import fmct.demo as demo_mod

    seen = {}

    def fake_run(out, cfg, log):  # type: ignore[no-untyped-def]
        seen["feature"] = cfg.feature
        raise ValueError("stop here")

    monkeypatch.setattr(demo_mod, "run_demo", fake_run)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--feature", "brain_stats"])
    assert seen == {"feature": "brain_stats"} and result.exit_code == 1
    monkeypatch.undo()
    out = tmp_path / "bad"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--feature", "bogus"])
    assert result.exit_code == 2 and "unknown readout 'bogus'" in result.output and not out.exists()
