"""Linear, kNN and attentive probes on synthetic embeddings; nothing is fitted on test scans."""

import numpy as np
import pytest
from evalkit import FINDINGS3, make_labels, separable_embeddings, tiny_backbone

from fmct.evaluate.attentive import fit_attentive_probe, macro_auroc
from fmct.evaluate.knn import fit_knn_probe
from fmct.evaluate.probe import fit_linear_probe, save_probe_classifier


@pytest.fixture
def data():  # type: ignore[no-untyped-def]
    df = make_labels(240, seed=1)
    emb = separable_embeddings(df, FINDINGS3, dim=8, signal=2.5)
    y = df[FINDINGS3].to_numpy(dtype=float)
    return emb, y


def test_linear_probe_learns_and_selects_c(data) -> None:  # type: ignore[no-untyped-def]
    emb, y = data
    x = emb.cls
    p = fit_linear_probe(x[:120], y[:120], x[120:170], y[120:170], FINDINGS3)
    assert p.status == ["ok"] * 3 and all(c is not None for c in p.C)
    s = p.predict_proba(x[170:])
    assert s.shape == (70, 3) and np.all((s > 0) & (s < 1))
    assert macro_auroc(y[170:], s) > 0.9
    # folded raw-feature weights reproduce the logits
    w, b = p.folded()
    np.testing.assert_allclose(x[170:] @ w.T + b, p.decision_function(x[170:]), rtol=1e-4, atol=1e-4)


def test_single_class_finding_is_na(data) -> None:  # type: ignore[no-untyped-def]
    emb, y = data
    y2 = y.copy()
    y2[:, 1] = 0
    p = fit_linear_probe(emb.cls[:100], y2[:100], None, None, FINDINGS3)
    assert p.status[1].startswith("n/a") and p.C[1] is None
    s = p.predict_proba(emb.cls[100:])
    assert np.isnan(s[:, 1]).all() and np.isfinite(s[:, [0, 2]]).all()
    w, b = p.folded()
    assert np.all(w[1] == 0) and b[1] == -10


def test_unlabelled_entries_are_ignored(data) -> None:  # type: ignore[no-untyped-def]
    emb, y = data
    y2 = y.copy()
    y2[::3, 0] = np.nan
    p = fit_linear_probe(emb.cls[:150], y2[:150], emb.cls[150:200], y2[150:200], FINDINGS3)
    assert p.status[0] == "ok"


def test_knn_probe(data) -> None:  # type: ignore[no-untyped-def]
    emb, y = data
    p = fit_knn_probe(emb.cls[:120], y[:120], emb.cls[120:170], y[120:170], FINDINGS3, ks=(3, 10))
    assert all(k in (3, 10) for k in p.k)
    s = p.predict_proba(emb.cls[170:])
    assert ((s >= 0) & (s <= 1)).all() and macro_auroc(y[170:], s) > 0.85


def test_attentive_probe(data) -> None:  # type: ignore[no-untyped-def]
    emb, y = data
    p = fit_attentive_probe(
        emb.patch[:120], y[:120], emb.patch[120:170], y[120:170], FINDINGS3, epochs=15, num_heads=2
    )
    assert macro_auroc(y[170:], p.predict_proba(emb.patch[170:])) > 0.85


def test_saved_probe_classifier_predicts_like_the_probe(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from fmct.evaluate.embed import embed_batch
    from fmct.models.hub import load_model

    torch.manual_seed(0)
    bb = tiny_backbone()
    x = torch.rand(12, 3, 16, 16, 16)
    out = embed_batch(bb, x)
    feats = np.concatenate([out["cls"], out["mean_patch"]], axis=1)
    y = np.c_[feats[:, 0] > np.median(feats[:, 0]), feats[:, 5] > np.median(feats[:, 5])].astype(float)
    p = fit_linear_probe(feats, y, None, None, ["ich", "sdh"])
    d = save_probe_classifier(p, bb, "cls+mean", tmp_path / "clf")
    clf = load_model(d)
    assert clf.kind == "classifier" and clf.labels == ["ich", "sdh"]
    np.testing.assert_allclose(clf.predict_proba(x).numpy(), p.predict_proba(feats), atol=1e-4)


def test_attentive_probe_on_the_cpu_device_is_unchanged(data) -> None:  # type: ignore[no-untyped-def]
    emb, y = data
    args = (emb.patch[:60], y[:60], emb.patch[60:90], y[60:90], FINDINGS3)
    a = fit_attentive_probe(*args, epochs=3, num_heads=2)
    b = fit_attentive_probe(*args, epochs=3, num_heads=2, device="cpu")
    np.testing.assert_array_equal(a.predict_proba(emb.patch[90:]), b.predict_proba(emb.patch[90:]))
