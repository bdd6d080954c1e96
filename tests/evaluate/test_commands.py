"""The evaluation subcommands through the real CLI (tiny store, tiny model, small files)."""

import json

import pandas as pd
import torch
from evalkit import FINDINGS3, MemoryStore, make_labels, separable_embeddings, write_disk_store
from typer.testing import CliRunner

from fmct import load_model
from fmct.cli import app
from fmct.evaluate.embed import StoreInputs, load_embeddings, save_embeddings

runner = CliRunner()


def test_embed_probe_and_save_classifier(tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    df = make_labels(40, seed=5)
    store = write_disk_store(tmp_path / "store", MemoryStore(df))
    df.to_csv(tmp_path / "labels.csv", index=False)
    r = runner.invoke(
        app,
        [
            "embed",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(store),
            "--out",
            str(tmp_path / "emb.parquet"),
            "--batch-size",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(load_embeddings(tmp_path / "emb.parquet").scan_ids) == 40
    r = runner.invoke(
        app,
        [
            "probe",
            "--embeddings",
            str(tmp_path / "emb.parquet"),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "probe"),
            "--fractions",
            "0.5,1",
            "--seeds",
            "2",
            "--n-boot",
            "50",
            "--no-plots",
            "--model",
            str(tiny_model_dir),
            "--save-classifier",
            str(tmp_path / "clf"),
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "probe" / "report.json").read_text())
    assert {x["setting"] for x in rep["results"]} == {"0.5", "1"}
    cfg = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert cfg["kind"] == "classifier" and cfg["labels"] == FINDINGS3
    # the intracranial readout: probes run on it, and a classifier saved from it pools the same way
    probe = ["probe", "--embeddings", str(tmp_path / "emb.parquet"), "--labels", str(tmp_path / "labels.csv"),
             "--fractions", "1", "--seeds", "1", "--n-boot", "20", "--no-plots", "--feature", "brain_max"]  # fmt: skip
    r = runner.invoke(app, [*probe, "--out", str(tmp_path / "probe_brain"), "--method", "linear,knn"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "probe_brain" / "report.json").read_text())
    assert {x["method"] for x in rep["results"]} == {"linear", "knn"}
    emb = load_embeddings(tmp_path / "emb.parquet")
    ids = emb.scan_ids[:6]
    for kind in ("brain_max", "brain_stats"):
        r = runner.invoke(app, [*probe[:-1], kind, "--out", str(tmp_path / f"p_{kind}"), "--model",
                                str(tiny_model_dir), "--save-classifier", str(tmp_path / f"clf_{kind}")])  # fmt: skip
        assert r.exit_code == 0, r.output
        clf = load_model(tmp_path / f"clf_{kind}")
        assert (
            clf.head_config["pooling"] == kind
            and clf.head_config["in_features"] == emb.feature(kind).shape[1]
        )
        inputs = StoreInputs(store, ids, clf.input_size, clf.preprocessing["windows"])
        x = torch.stack([inputs[i][1] for i in range(len(ids))])
        with torch.no_grad():  # the classifier finds the cavity in its input = the embeddings' column
            from_embeddings = clf.head(torch.from_numpy(emb.select(ids).feature(kind)))
            torch.testing.assert_close(clf(x), from_embeddings, atol=1e-4, rtol=1e-4)
    assert emb.feature("brain_stats").shape == (40, 3 * emb.cls.shape[1])


def test_finetune_and_evaluate_commands(tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    from fmct.evaluate.splits import make_splits

    df = make_labels(32, seed=6)
    sp = make_splits(df, None)
    gone = list(sp.loc[sp["split"] == "train", "scan_id"])[:2]  # labelled, never ingested
    store = write_disk_store(tmp_path / "store", MemoryStore(df), [s for s in df["scan_id"] if s not in gone])
    df.to_csv(tmp_path / "labels.csv", index=False)
    r = runner.invoke(
        app,
        [
            "finetune",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(store),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "ft"),
            "--epochs",
            "1",
            "--mode",
            "lora",
            "--batch-size",
            "8",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    out = r.output.replace("\n", "")
    assert "fmct finetune: warning: 2 of " in out and f"(e.g. {gone[0]}, {gone[1]})" in out, r.output
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["kind"] == "classifier"
    save_embeddings(separable_embeddings(df, FINDINGS3), tmp_path / "e.parquet")
    (tmp_path / "eval.yaml").write_text(
        f"models:\n  emb: {tmp_path / 'e.parquet'}\nlabels: {tmp_path / 'labels.csv'}\n"
        f"data: {store}\nout: {tmp_path / 'ev'}\nprotocol:\n  fractions: [1.0]\n  seeds: [0]\n  n_boot: 30\n  plots: false\n"
    )
    r = runner.invoke(
        app,
        [
            "evaluate",
            "--config",
            str(tmp_path / "eval.yaml"),
            "--model",
            f"m2={tiny_model_dir}",
            "--feature",
            "cls+mean",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "warning: 2 of 32 labelled scan(s) have no scan in the store" in r.output.replace("\n", "")
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert {x["model"] for x in rep["results"]} == {"emb", "m2"}
    assert rep["meta"]["config"]["device"] == "cpu"  # the device the networks ran on is in the report
    assert (tmp_path / "ev" / "report.html").is_file()


def test_evaluate_and_probe_read_brain_stats_or_name_the_file_without_it(tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    df = make_labels(32, seed=6)
    store = write_disk_store(tmp_path / "store", MemoryStore(df))
    df.to_csv(tmp_path / "labels.csv", index=False)
    args = ["evaluate", "--labels", str(tmp_path / "labels.csv"), "--data", str(store), "--fractions", "1",
            "--seeds", "1", "--n-boot", "20", "--device", "cpu", "--feature", "brain_stats"]  # fmt: skip
    r = runner.invoke(app, [*args, "--model", f"m={tiny_model_dir}", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["meta"]["config"]["feature"] == "brain_stats" and {x["model"] for x in rep["results"]} == {"m"}
    old = save_embeddings(separable_embeddings(df, FINDINGS3), tmp_path / "old.parquet")  # no brain columns
    r = runner.invoke(app, [*args, "--model", f"old={old}", "--out", str(tmp_path / "ev2")])
    assert r.exit_code == 1 and f"{old}: no brain_stats column" in r.output.replace("\n", ""), r.output
    r = runner.invoke(app, ["probe", "--embeddings", str(old), "--labels", str(tmp_path / "labels.csv"),
                            "--out", str(tmp_path / "p"), "--feature", "brain_stats"])  # fmt: skip
    assert r.exit_code == 1 and r.output.startswith(f"fmct probe: {old}: no brain_stats column"), r.output


def test_labels_import_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pd.DataFrame({"name": ["CQ500-CT-0"], "R1:ICH": [1], "R2:ICH": [1], "R3:ICH": [0]}).to_csv(
        tmp_path / "reads.csv", index=False
    )
    r = runner.invoke(
        app,
        [
            "labels",
            "import",
            "--format",
            "cq500",
            str(tmp_path / "reads.csv"),
            "--out",
            str(tmp_path / "labels.csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    out = pd.read_csv(tmp_path / "labels.csv")
    assert out.loc[0, "ich"] == 1 and out.loc[0, "site"] == "cq500"


def test_clear_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = runner.invoke(
        app,
        [
            "probe",
            "--embeddings",
            str(tmp_path / "nope.parquet"),
            "--labels",
            "x.csv",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 2 and "nope.parquet" in r.output and "Traceback" not in r.output
    assert r.output.startswith("fmct probe: ")  # one error style: fmct <command>: <what> (<file>)
    r = runner.invoke(
        app, ["labels", "import", "--format", "rsna", str(tmp_path / "a.csv"), "--out", "o.csv"]
    )
    assert r.exit_code == 2 and "a.csv" in r.output and r.output.startswith("fmct labels import: ")
    (tmp_path / "a.csv").write_text("ID,Label\n")
    r = runner.invoke(
        app, ["labels", "import", "--format", "rsna", str(tmp_path / "a.csv"), "--out", "o.csv"]
    )
    assert r.exit_code == 2 and "--dicom" in r.output
    r = runner.invoke(app, ["finetune", "--data", str(tmp_path), "--labels", "l.csv", "--out", "o"])
    assert r.exit_code == 2 and ("--model" in r.output or "--arch" in r.output)
    r = runner.invoke(app, ["evaluate", "--labels", "l.csv"])
    assert r.exit_code == 2 and "no model" in r.output and r.output.startswith("fmct evaluate: ")


def test_embed_names_a_truncated_scan_file(tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    df = make_labels(6, seed=1)
    store = write_disk_store(tmp_path / "store", MemoryStore(df))
    sid = sorted(df["scan_id"])[2]
    npy = store / "scans" / f"{sid}.npy"
    npy.write_bytes(npy.read_bytes()[:-100])
    for workers in ("1", "2"):  # in this process, and re-raised from a DataLoader worker
        args = ["--model", str(tiny_model_dir), "--data", str(store), "--out", str(tmp_path / "e.parquet")]
        r = runner.invoke(app, ["embed", *args, "--workers", workers])
        assert r.exit_code == 1, r.output
        assert f"scan {sid}: file truncated" in r.output and str(npy) in r.output.replace("\n", "")
        assert "Traceback" not in r.output
