"""Patient-level splits and training-label subsets (fractions, few-shot).

Split names: ``pool`` (unlabelled pretraining pool, optional), ``train``, ``val``, ``test`` (held-out
scans of the training site = in-distribution) and ``ood`` (every scan of the other sites).
:func:`assert_patient_disjoint` is called by everything that consumes splits: a patient must never
appear in two splits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("pool", "train", "val", "test", "ood")
#: splits whose scans may be used to fit or select a model (never test/ood)
FIT_SPLITS = ("train", "val")


class SplitLeak(AssertionError):
    """A patient appears in more than one split."""


def assert_patient_disjoint(splits: pd.DataFrame) -> None:
    """Raise :class:`SplitLeak` when some ``patient_id`` has scans in two different splits."""
    if splits.empty:
        return
    n_splits = splits.groupby("patient_id")["split"].nunique()
    leaked = n_splits[n_splits > 1]
    if len(leaked):
        raise SplitLeak(f"{len(leaked)} patient(s) appear in more than one split, e.g. {leaked.index[0]}")


def make_splits(
    labels: pd.DataFrame,
    train_site: str | None = None,
    val_frac: float = 0.15,
    test_frac: float = 0.25,
    pool_frac: float = 0.0,
    seed: int = 0,
    stratify: str | None = "ich",
) -> pd.DataFrame:
    """Assign every scan to a split, by patient.

    Args:
        labels: table with ``scan_id`` and ``patient_id`` (``site`` optional; missing patient ids
            count each scan as its own patient).
        train_site: the in-distribution site; scans of other sites become ``ood``. Default: the
            most frequent site (or everything when there is no ``site`` column).
        val_frac / test_frac / pool_frac: fractions of the training site's *patients*.
        stratify: a 0/1 label column; patients with any positive scan are spread proportionally.

    Returns:
        DataFrame ``scan_id, patient_id, site, split`` in the order of ``labels``.
    """
    df = labels[["scan_id"]].copy()
    df["patient_id"] = (
        labels["patient_id"].astype(str) if "patient_id" in labels else labels["scan_id"].astype(str)
    )
    df["site"] = labels["site"].astype(str) if "site" in labels else "site"
    if train_site is None:
        train_site = str(df["site"].value_counts().idxmax())
    if train_site not in set(df["site"]):
        raise ValueError(f"training site {train_site!r} not among the sites {sorted(set(df['site']))}")
    if min(val_frac, test_frac, pool_frac) < 0 or val_frac + test_frac + pool_frac >= 1:
        raise ValueError("val_frac + test_frac + pool_frac must be in [0, 1) and each >= 0")
    df["split"] = "ood"
    in_site = df["site"] == train_site
    # a patient scanned at two sites: keep all their scans out of the ID splits
    pat_sites = df.groupby("patient_id")["site"].nunique()
    multi_site = set(pat_sites[pat_sites > 1].index)
    id_rows = in_site & ~df["patient_id"].isin(multi_site)
    patients = df.loc[id_rows, "patient_id"].unique()
    strata = np.zeros(len(patients), dtype=int)
    if stratify is not None and stratify in labels:
        pos = (
            labels.loc[id_rows, stratify].fillna(0).astype(float).groupby(df.loc[id_rows, "patient_id"]).max()
        )
        strata = (pos.reindex(patients).fillna(0).to_numpy() > 0).astype(int)
    rng = np.random.default_rng(seed)
    assign: dict[str, str] = {}
    for s in np.unique(strata):
        pats = rng.permutation(patients[strata == s])
        n = len(pats)
        n_pool, n_test, n_val = (int(round(f * n)) for f in (pool_frac, test_frac, val_frac))
        cuts = np.cumsum([n_pool, n_test, n_val])
        for i, p in enumerate(pats):
            assign[p] = (
                "pool" if i < cuts[0] else "test" if i < cuts[1] else "val" if i < cuts[2] else "train"
            )
    df.loc[id_rows, "split"] = df.loc[id_rows, "patient_id"].map(assign)
    assert_patient_disjoint(df)
    return df.reset_index(drop=True)


def save_splits(splits: pd.DataFrame, path: str | Path) -> None:
    """Write ``scan_id, patient_id, site, split`` as CSV (atomically)."""

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    splits[["scan_id", "patient_id", "site", "split"]].to_csv(tmp, index=False)
    os.replace(tmp, path)


def load_splits(path: str | Path) -> pd.DataFrame:
    """Read a splits CSV and check it (columns, split names, patient disjointness)."""
    df = pd.read_csv(path, dtype={"scan_id": str, "patient_id": str, "site": str, "split": str})
    missing = {"scan_id", "split"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    if "patient_id" not in df:
        df["patient_id"] = df["scan_id"]
    bad = set(df["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"{path}: unknown split name(s) {sorted(bad)}; expected {SPLITS}")
    assert_patient_disjoint(df)
    return df


def subsample_fraction(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a random ``fraction`` of the training scans, with >= 1 positive per finding if possible.

    Args:
        y: ``(n, F)`` training labels (NaN allowed).
        fraction: in (0, 1]; at least 2 scans are kept.

    Returns:
        sorted int indices into the training rows.
    """
    n = y.shape[0]
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    k = min(n, max(2, int(round(fraction * n))))
    chosen = list(rng.permutation(n)[:k])
    yy = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0)
    # make sure each finding with positives in train has one positive and one negative in the subset
    for want in (1, 0):
        for j in range(yy.shape[1]):
            col = yy[:, j]
            have = col[chosen] == want
            cand = np.flatnonzero(col == want)
            if have.any() or len(cand) == 0 or (want == 1 and len(cand) == n):
                continue
            chosen.append(int(rng.choice(cand)))  # add one (the subset grows by at most 2F scans)
    return np.unique(np.asarray(chosen, dtype=np.int64))


def few_shot(y: np.ndarray, n_shots: int, seed: int) -> np.ndarray:
    """Indices with ``n_shots`` positives and ``n_shots`` negatives per finding (union over findings).

    Findings with fewer positives use all they have.
    """
    if n_shots < 1:
        raise ValueError("shots must be >= 1")
    rng = np.random.default_rng(seed)
    yy = np.asarray(y, dtype=np.float64)
    chosen: set[int] = set()
    for j in range(yy.shape[1]):
        for want in (1, 0):
            cand = np.flatnonzero(yy[:, j] == want)
            if len(cand):
                chosen.update(int(i) for i in rng.choice(cand, size=min(n_shots, len(cand)), replace=False))
    return np.asarray(sorted(chosen), dtype=np.int64)
