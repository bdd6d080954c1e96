"""``fmct.evaluate``: the evaluation protocol for one or several models (``fmct evaluate``), as a report object."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmct.api.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

DEFAULTS: dict[str, Any] = {
    "models": {},
    "labels": None,
    "data": [],
    "splits": None,
    "out": "eval_out",
    "protocol": {},
}


@dataclass
class EvaluationReport:
    """The report of :func:`evaluate`: ``raw`` is report.json's dict; ``out`` holds report.{json,md,html} and
    the plots."""

    out: Path
    raw: dict[str, Any]

    @property
    def html(self) -> Path:
        return self.out / "report.html"

    @property
    def results(self) -> pd.DataFrame:
        """One row per model × method × label setting × test set: ``n_test``, ``n_seeds`` and the macro AUROC
        / AP over findings (mean over seeds, ``*_lo`` / ``*_hi``: bootstrap 95 % CI; NaN when undefined)."""
        import pandas as pd

        keys = ("model", "method", "setting", "test_set", "n_test", "n_seeds")
        scores = ("auroc", "auroc_lo", "auroc_hi", "ap", "ap_lo", "ap_hi")
        rows = []
        for r in self.raw.get("results", []):
            row = {k: r.get(k) for k in keys}
            for metric in ("auroc", "ap"):
                macro = (r.get(metric) or {}).get("macro") or {}
                lo, hi = macro.get("ci") or (None, None)
                row.update({metric: macro.get("mean"), f"{metric}_lo": lo, f"{metric}_hi": hi})
            rows.append(row)
        return pd.DataFrame(rows, columns=[*keys, *scores]).astype(dict.fromkeys(scores, float))

    def per_finding(self, metric: str = "auroc") -> pd.DataFrame:
        """One row per result row × finding: ``mean`` over seeds and its CI (``lo``, ``hi``)."""
        import pandas as pd

        rows = []
        for r in self.raw.get("results", []):
            for finding, v in (r.get(metric) or {}).items():
                if finding == "macro" or v is None:
                    continue
                lo, hi = v.get("ci") or (None, None)
                key = {k: r.get(k) for k in ("model", "method", "setting", "test_set")}
                rows.append({**key, "finding": finding, "mean": v["mean"], "lo": lo, "hi": hi})
        return pd.DataFrame(rows)

    @property
    def comparisons(self) -> pd.DataFrame:
        """Paired model differences (same test scans, same bootstrap replicates), one row each."""
        import pandas as pd

        return pd.DataFrame(self.raw.get("comparisons", []))

    def lines(self) -> list[str]:
        """The lines ``fmct evaluate`` prints: macro AUROC [95 % CI] per result row."""
        out = []
        for r in self.results.itertuples():
            score = (
                "n/a" if r.auroc_lo != r.auroc_lo else f"{r.auroc:.3f} [{r.auroc_lo:.3f}, {r.auroc_hi:.3f}]"
            )
            out.append(
                f"{r.model:>10} {r.method:>14} labels {r.setting:>6} {r.test_set:>3}: macro AUROC {score}"
            )
        return out

    def __repr__(self) -> str:
        return (
            f"EvaluationReport({self.out}: {len(self.raw.get('results', []))} result rows; .results, .html)"
        )


def _set(cfg: dict[str, Any], overrides: Sequence[str]) -> None:
    """``protocol.n_boot=200`` style overrides, values read as YAML."""
    from fmct.config import parse_value

    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"override {item!r} is not of the form key=value")
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = parse_value(value)


def resolve(
    config: str | Path | Mapping[str, Any] | None,
    overrides: Sequence[str],
    **given: Any,
) -> dict[str, Any]:
    """eval.yaml (or a dict of its keys) with ``overrides`` and the arguments given (not None) applied."""
    import yaml

    from fmct.config import load_config, merge

    try:
        cfg = merge(DEFAULTS, config) if isinstance(config, Mapping) else load_config(config, [], DEFAULTS)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise UsageError(f"{config}: {e}") from None
    _set(cfg, overrides)
    proto = dict(cfg.get("protocol") or {})
    for key, value in given.items():
        if value is None:
            continue
        if key in ("fractions", "seeds", "methods", "n_boot", "feature", "device"):
            proto[key] = value
        elif key == "models":  # added to the config's models (a path: one model named after its folder)
            named = value if isinstance(value, Mapping) else {Path(value).name: str(value)}
            cfg["models"] = {**(cfg.get("models") or {}), **named}
        else:
            cfg[key] = value
    if isinstance(proto.get("seeds"), int):
        proto["seeds"] = list(range(proto["seeds"]))
    if isinstance(proto.get("methods"), str):
        proto["methods"] = [m.strip() for m in proto["methods"].split(",") if m.strip()]
    proto["feature"] = proto.get("feature") or "brain_max"
    cfg["protocol"] = proto
    return cfg


def _resolved_device(spec: str | None) -> str:
    """``"auto"`` (None) / ``"cpu"`` / ``"cuda[:N]"`` -> the device networks will run on (``"cpu"``, ``"cuda:0"``)."""
    from fmct.device import resolve_device

    try:
        return str(resolve_device(spec or "auto"))
    except ValueError as e:  # a GPU asked for that this machine does not have, or an unknown name
        raise UsageError(f"device: {e}", param="device") from None


def evaluate(
    models: Mapping[str, Any] | str | Path | None = None,
    labels: str | Path | pd.DataFrame | None = None,
    data: str | Path | Sequence[str | Path] | None = None,
    out: str | Path | None = None,
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    splits: str | Path | None = None,
    fractions: Sequence[float] | None = None,
    seeds: int | Sequence[int] | None = None,
    methods: str | Sequence[str] | None = None,
    n_boot: int | None = None,
    feature: str | None = None,
    device: str | None = None,
    overrides: Sequence[str] = (),
    log: Callable[[str], None] | bool = True,
) -> EvaluationReport:
    """Run the evaluation protocol (probes × label fractions × seeds, ID vs OOD, bootstrap CIs, paired model
    comparisons, ROC / PR curves, calibration) and write report.json, report.md and report.html into ``out``.

    Args:
        models: name -> a model directory (or Hub repo id), an embeddings ``.parquet`` or a dict spec
            (``{"model": DIR, "random_init": True}``, ``{"finetune": {"arch": "resnet3d"}}``); one path: one model.
        labels: labels.csv (``scan_id``, ``patient_id``, ``site``, one 0/1 column per finding) or a DataFrame.
        data: store folder(s) (needed to embed model directories and to fine-tune).
        out: output folder (default ``eval_out``).
        config: eval.yaml or a dict with its keys (``models``, ``labels``, ``data``, ``splits``, ``out``,
            ``protocol``); the other arguments override it, as do ``overrides`` (``["protocol.n_boot=200"]``).
        fractions / seeds (a count or a list) / methods (``linear``, ``knn``, ``attentive``) / n_boot /
            feature (``brain_max`` by default, ``brain_stats``, ``cls``, ``mean_patch``, ``cls+mean``): protocol
            settings.
        device: where networks run (embedding, attentive probes, fine-tuning): ``"auto"`` (the GPU when one
            is visible), ``"cpu"``, ``"cuda[:N]"``; default: ``protocol.device`` of the config, else auto.
        log: True prints progress lines to stderr, a callable receives them, False is quiet.

    Returns:
        :class:`EvaluationReport` (``.results`` DataFrame, ``.per_finding()``, ``.comparisons``, ``.html``).

    Raises:
        UsageError: no model or no labels, a device this machine does not have.  FileNotFoundError: a store or file that is not there.
        ValueError: unknown protocol settings, labels or embeddings that cannot be used.
    """
    from fmct.evaluate.protocol import ProtocolConfig, run_protocol

    cfg = resolve(
        config,
        overrides,
        models=models,
        labels=labels,
        data=data,
        out=out,
        splits=splits,
        fractions=fractions,
        seeds=seeds,
        methods=methods,
        n_boot=n_boot,
        feature=feature,
        device=device,
    )
    cfg["protocol"]["device"] = _resolved_device(cfg["protocol"].get("device"))
    if not cfg["models"]:
        raise UsageError(
            "no model to evaluate: give models (--model NAME=PATH) or a models: section in the config"
        )
    if cfg["labels"] is None:
        raise UsageError("no labels: give labels (--labels) or labels: in the config")
    stores = [str(s) for s in (cfg["data"] if isinstance(cfg["data"], list | tuple) else [cfg["data"]])]
    for s in stores:
        if not (Path(s) / "manifest.parquet").exists():
            raise FileNotFoundError(f"{s}: not an fmct store (no manifest.parquet)")
    pcfg = ProtocolConfig.from_dict(cfg["protocol"])
    if log is True:
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    report = run_protocol(
        cfg["models"],
        cfg["labels"],
        cfg["out"],
        store=None if not stores else (stores[0] if len(stores) == 1 else stores),
        splits=cfg.get("splits"),
        config=pcfg,
        log=log or None,
    )
    return EvaluationReport(Path(cfg["out"]), report)
