"""`fmct probe`: linear / kNN / attentive probes on frozen embeddings, label fractions × seeds."""

from __future__ import annotations

from pathlib import Path

import typer

from fmct.commands._common import device_option


def probe(
    embeddings: Path = typer.Option(
        ..., "--embeddings", help="Embeddings file from `fmct embed` (.parquet)."
    ),
    labels: Path = typer.Option(..., "--labels", help="labels.csv (scan_id, patient_id, site, findings)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (report.json, report.md, report.html, plots)."
    ),
    splits: Path | None = typer.Option(None, "--splits", help="splits.csv; default: patient-level splits."),
    method: str = typer.Option(
        "linear", "--method", help="linear, knn, attentive (comma-separated for several)."
    ),
    fractions: str = typer.Option(
        "0.01,0.1,1.0", "--fractions", help="Label fractions of the training split."
    ),
    shots: str = typer.Option(
        "", "--shots", help="Few-shot: N positives (and N negatives) per finding, e.g. 5,10."
    ),
    seeds: str = typer.Option("3", "--seeds", help="Number of seeds, or an explicit list like 0,1,2."),
    feature: str = typer.Option(
        "brain_max",
        "--feature",
        help="cls, mean_patch, cls+mean, brain_max (max over the patch tokens inside the cranial cavity) or "
        "brain_stats (their mean, std and max); the brain readouts need embeddings made by this fmct; a saved "
        "classifier pools the same way.",
    ),
    n_boot: int = typer.Option(1000, "--n-boot", min=10, help="Bootstrap resamples for the 95% CIs."),
    train_site: str | None = typer.Option(
        None, "--train-site", help="In-distribution site (default: largest)."
    ),
    save_classifier: Path | None = typer.Option(
        None,
        "--save-classifier",
        help="Also save a linear probe (all training labels, seed 0) as a classifier "
        "model directory usable by `fmct predict`; needs --model.",
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="The model directory that produced the embeddings."
    ),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip ROC/PR and reliability plots."),
    device: str = device_option("Where the attentive probe trains (linear and kNN run on the CPU)"),
) -> None:
    """Fit probes on the training split (C / k / epoch chosen on validation), score the ID test split
    and the other sites (OOD), with bootstrap 95% CIs. Findings with one class in train are n/a.
    """
    from fmct.commands._common import parse_list, resolve_device_option, run_or_fail, seeds_option, usage
    from fmct.evaluate.embed import load_embeddings
    from fmct.evaluate.protocol import ProtocolConfig, run_protocol

    dev = resolve_device_option(device)
    if save_classifier is not None and model is None:
        usage("--save-classifier needs --model (the backbone that produced the embeddings)")
    emb = run_or_fail(load_embeddings, embeddings)
    run_or_fail(emb.feature, feature)  # an unknown kind or a file without that column, before any fitting
    cfg = run_or_fail(
        ProtocolConfig.from_dict,
        {
            "fractions": parse_list(fractions, float, "--fractions"),
            "shots": parse_list(shots, int, "--shots"),
            "seeds": seeds_option(seeds),
            "methods": parse_list(method, str, "--method"),
            "feature": feature,
            "n_boot": n_boot,
            "train_site": train_site,
            "plots": not no_plots,
            "device": str(dev),
        },
    )
    if not cfg.fractions and not cfg.shots:
        usage("give at least one label fraction or --shots")
    name = embeddings.name.removesuffix(".parquet")
    report = run_or_fail(
        run_protocol,
        {name: emb},
        labels,
        out,
        splits=splits,
        config=cfg,
        log=lambda m: typer.echo(m, err=True),
    )
    for r in report["results"]:
        mac = r["auroc"]["macro"]
        typer.echo(
            f"{r['method']:>9} labels {r['setting']:>6} {r['test_set']:>3}: macro AUROC "
            + (f"{mac['mean']:.3f} [{mac['ci'][0]:.3f}, {mac['ci'][1]:.3f}]" if mac else "n/a")
        )
    if save_classifier is not None:
        _save_classifier(emb, labels, out / "splits.csv", cfg, model, save_classifier)
        typer.echo(f"saved classifier to {save_classifier}")
    typer.echo(f"wrote {out / 'report.json'}")


def _save_classifier(emb, labels: Path, splits: Path, cfg, model: Path, dest: Path) -> None:  # type: ignore[no-untyped-def]
    from fmct.commands._common import run_or_fail
    from fmct.evaluate.probe import fit_linear_probe, save_probe_classifier
    from fmct.evaluate.splits import load_splits
    from fmct.labels.table import label_columns, label_matrix, read_labels

    df = read_labels(labels)
    sp = load_splits(splits)
    findings = label_columns(df, cfg.findings)
    have = set(emb.scan_ids)
    tr = [s for s in sp.loc[sp["split"] == "train", "scan_id"] if s in have]
    va = [s for s in sp.loc[sp["split"] == "val", "scan_id"] if s in have]
    p = fit_linear_probe(
        emb.select(tr).feature(cfg.feature),
        label_matrix(df, tr, findings),
        emb.select(va).feature(cfg.feature),
        label_matrix(df, va, findings),
        findings,
    )
    run_or_fail(
        save_probe_classifier,
        p,
        model,
        cfg.feature,
        dest,
        training={"n_train": len(tr), "n_val": len(va), "labels_file": labels.name},
    )
