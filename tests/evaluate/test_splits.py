"""Patient-level splits, leak detection, label fractions and few-shot subsets."""

import numpy as np
import pandas as pd
import pytest
from evalkit import make_labels

from fmct.evaluate.splits import (
    SplitLeak,
    assert_patient_disjoint,
    few_shot,
    load_splits,
    make_splits,
    save_splits,
    subsample_fraction,
)


def test_make_splits_is_by_patient_and_ood_by_site(tmp_path) -> None:
    df = make_labels(200, seed=3)
    sp = make_splits(df, train_site="a", val_frac=0.2, test_frac=0.2, pool_frac=0.1, seed=0)
    assert_patient_disjoint(sp)
    assert set(sp.loc[sp["site"] != "a", "split"]) == {"ood"}
    assert set(sp.loc[sp["site"] == "a", "split"]) == {"pool", "train", "val", "test"}
    assert sp.groupby("patient_id")["split"].nunique().max() == 1
    # stratified: ICH-positive patients land in every ID split
    merged = sp.merge(df[["scan_id", "ich"]])
    for s in ("train", "val", "test"):
        assert merged.loc[merged["split"] == s, "ich"].sum() > 0
    save_splits(sp, tmp_path / "splits.csv")
    back = load_splits(tmp_path / "splits.csv")
    assert list(back["split"]) == list(sp["split"])
    # deterministic
    assert list(make_splits(df, "a", 0.2, 0.2, 0.1, seed=0)["split"]) == list(sp["split"])


def test_leak_is_detected(tmp_path) -> None:
    sp = pd.DataFrame(
        {"scan_id": ["x", "y"], "patient_id": ["p", "p"], "site": ["a", "a"], "split": ["train", "test"]}
    )
    with pytest.raises(SplitLeak):
        assert_patient_disjoint(sp)
    sp.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SplitLeak):
        load_splits(tmp_path / "bad.csv")


def test_patient_at_two_sites_is_kept_out_of_id_splits() -> None:
    df = make_labels(40)
    df.loc[df.index[-1], "patient_id"] = df.loc[df["site"] == "a", "patient_id"].iloc[0]
    sp = make_splits(df, train_site="a")
    assert_patient_disjoint(sp)


def test_subsample_fraction_keeps_a_positive_per_finding() -> None:
    rng = np.random.default_rng(0)
    y = np.c_[rng.uniform(size=500) < 0.02, rng.uniform(size=500) < 0.3, np.zeros(500)].astype(float)
    for seed in range(5):
        idx = subsample_fraction(y, 0.01, seed)
        assert 5 <= len(idx) <= 5 + 2 * y.shape[1]
        assert y[idx, 0].sum() >= 1 and y[idx, 1].sum() >= 1
        assert (y[idx, 1] == 0).any()
    assert len(subsample_fraction(y, 1.0, 0)) == 500
    assert not np.array_equal(subsample_fraction(y, 0.1, 0), subsample_fraction(y, 0.1, 1))
    with pytest.raises(ValueError):
        subsample_fraction(y, 0.0, 0)


def test_few_shot() -> None:
    y = np.c_[np.r_[np.ones(3), np.zeros(97)], np.r_[np.zeros(50), np.ones(50)]]
    idx = few_shot(y, 5, seed=0)
    assert y[idx, 0].sum() == 3  # only 3 positives exist
    assert y[idx, 1].sum() >= 5 and (y[idx, 1] == 0).sum() >= 5
