"""The protocol end to end: splits, fractions × seeds, ID vs OOD, comparisons, report files."""

import json

import numpy as np
import pytest
from evalkit import FINDINGS3, MemoryStore, make_labels, separable_embeddings, tiny_backbone

import fmct.evaluate.protocol as protocol
from fmct.evaluate.protocol import run_protocol


@pytest.fixture
def labels():  # type: ignore[no-untyped-def]
    return make_labels(160, seed=2)


def test_report_structure_and_files(labels, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = separable_embeddings(labels, FINDINGS3, signal=3.0, seed=0)
    weak = separable_embeddings(labels, FINDINGS3, signal=0.3, seed=1)
    rep = run_protocol(
        {"good": good, "weak": weak},
        labels,
        tmp_path,
        config={"fractions": [0.1, 1.0], "seeds": [0, 1, 2], "n_boot": 200},
    )
    for name in ("report.json", "report.md", "report.html", "splits.csv"):
        assert (tmp_path / name).is_file()
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["meta"]["findings"] == FINDINGS3
    assert set(on_disk["meta"]["test_sets"]) == {"id", "ood"}
    assert on_disk["meta"]["patients_resampled"] is True  # 2 scans per patient
    res = {(r["model"], r["method"], r["setting"], r["test_set"]): r for r in rep["results"]}
    assert len(res) == 2 * 2 * 2  # models x fractions x test sets
    g = res[("good", "linear", "1", "id")]["auroc"]["macro"]
    w = res[("weak", "linear", "1", "id")]["auroc"]["macro"]
    # a linear probe on all training labels cannot differ between seeds: it runs once; 10 % subsets differ
    assert len(g["seeds"]) == 1 and g["ci"][0] <= g["mean"] <= g["ci"][1] + 1e-9
    assert len(res[("good", "linear", "0.1", "id")]["auroc"]["macro"]["seeds"]) == 3
    assert [r["seed"] for r in rep["runs"] if r["model"] == "good" and r["setting"] == "1"] == [0]
    assert g["mean"] > 0.9 > w["mean"]
    comp = next(
        c
        for c in rep["comparisons"]
        if (c["a"], c["b"], c["method"], c["setting"], c["test_set"], c["metric"])
        == ("good", "weak", "linear", "1", "id", "auroc")
    )
    assert comp["value"] == pytest.approx(g["mean"] - w["mean"])
    assert comp["ci"][0] > 0
    # plots exist and are referenced in the HTML
    html = (tmp_path / "report.html").read_text()
    for p in rep["plots"].values():
        assert (tmp_path / p["curves"]).is_file() and p["curves"] in html
    assert "good/linear/id" in rep["calibration"]
    assert "Paired differences" in (tmp_path / "report.md").read_text()


def test_test_scans_never_reach_fitting(labels, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every fit/selection call gets train and val scans only."""
    emb = separable_embeddings(labels, FINDINGS3)
    seen: list[set] = []
    real = protocol.fit_predict_probe

    def spy(method, emb, feature, tr, y_tr, va, y_va, tests, findings, seed, device=None):  # type: ignore[no-untyped-def]
        seen.append(set(tr) | set(va))
        for ids in tests.values():
            assert not (set(ids) & (set(tr) | set(va)))
        return real(method, emb, feature, tr, y_tr, va, y_va, tests, findings, seed, device)

    monkeypatch.setattr(protocol, "fit_predict_probe", spy)
    rep = run_protocol(
        {"m": emb}, labels, tmp_path, config={"fractions": [1.0], "seeds": [0], "n_boot": 50, "plots": False}
    )
    import pandas as pd

    sp = pd.read_csv(tmp_path / "splits.csv")
    fit_ok = set(sp.loc[sp["split"].isin(["train", "val"]), "scan_id"])
    assert seen and all(s <= fit_ok for s in seen)
    assert rep["meta"]["n_train"] + rep["meta"]["n_val"] + sum(rep["meta"]["test_sets"].values()) == len(sp)


def test_identical_models_compare_to_zero_and_fewshot(labels, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels, FINDINGS3)
    rep = run_protocol(
        {"a": emb, "b": emb},
        labels,
        tmp_path,
        config={
            "fractions": [],
            "shots": [3],
            "seeds": [0, 1],
            "n_boot": 100,
            "plots": False,
            "methods": ["linear", "knn", "attentive"],
        },
    )
    c = next(c for c in rep["comparisons"] if c["metric"] == "auroc")
    assert {r["method"] for r in rep["results"]} == {"linear", "knn", "attentive"}
    assert c["setting"] == "3-shot" and c["value"] == 0 and c["ci"] == [0.0, 0.0]
    assert rep["results"][0]["shots"] == 3


def test_model_dir_random_init_and_finetune_specs(tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    labels = make_labels(48, seed=4)
    store = MemoryStore(labels)
    arch = {"type": "vit3d", "img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
    msgs: list[str] = []
    rep = run_protocol(
        {
            "ssl": str(tiny_model_dir),
            "random": {"model": str(tiny_model_dir), "random_init": True},
            "scratch": {
                "finetune": {
                    "arch": arch,
                    "input_size": 16,
                    "epochs": 1,
                    "batch_size": 8,
                    "fractions": [1.0],
                    "seeds": [0],
                }
            },
        },
        labels,
        tmp_path,
        store=store,
        config={"fractions": [0.5, 1.0], "seeds": [0], "n_boot": 50, "plots": False, "methods": ["linear"]},
        log=msgs.append,
    )
    # fine-tuning reports its steps, and each fit its time
    assert any(m.startswith("scratch fine-tuning 1 seed 0 ") and "(100 %) |" in m for m in msgs), msgs
    assert any(m.startswith("scratch finetune-full 1 seed 0: ") and m.endswith(" s") for m in msgs), msgs
    assert (tmp_path / "embeddings" / "ssl.parquet").is_file()
    assert (tmp_path / "embeddings" / "random.parquet").is_file()
    models = {(r["model"], r["method"], r["setting"]) for r in rep["results"]}
    assert ("scratch", "finetune-full", "1") in models and ("scratch", "finetune-full", "0.5") not in models
    assert ("random", "linear", "0.5") in models
    assert any(
        c["method"].startswith("linear vs finetune") or "finetune" in c["method"] for c in rep["comparisons"]
    )


def test_hooks_and_bad_config(labels, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels, FINDINGS3)
    rep = run_protocol(
        {"m": emb},
        labels,
        tmp_path,
        config={"fractions": [1.0], "seeds": [0], "n_boot": 20, "plots": False},
        hooks={"retrieval": lambda ctx: {"n_models": len(ctx.embeddings)}},
    )
    assert rep["retrieval"] == {"n_models": 1}
    with pytest.raises(ValueError, match="unknown protocol setting"):
        run_protocol({"m": emb}, labels, tmp_path, config={"fractionz": [1.0]})
    with pytest.raises(ValueError, match="unknown probe method"):
        run_protocol({"m": emb}, labels, tmp_path, config={"methods": ["svm"]})


def test_missing_embeddings_are_dropped_for_all_models(labels, tmp_path) -> None:  # type: ignore[no-untyped-def]
    full = separable_embeddings(labels, FINDINGS3)
    part = full.select(full.scan_ids[:-10])
    msgs: list[str] = []
    rep = run_protocol(
        {"a": full, "b": part},
        labels,
        tmp_path,
        log=msgs.append,
        config={"fractions": [1.0], "seeds": [0], "n_boot": 20, "plots": False},
    )
    warned = [m for m in msgs if "no embedding" in m]
    assert len(warned) == 1 and warned[0].startswith(
        "warning: b: 10 of 160 labelled scan(s) have no embedding"
    )
    shown = warned[0].split("(e.g. ")[1].split(")")[0].split(", ")
    assert shown[-1] == "..." and len(shown) == 6 and set(shown[:5]) <= set(full.scan_ids[-10:])
    n = {r["model"]: r["n_test"] for r in rep["results"] if r["test_set"] == "ood"}
    assert n["a"] == n["b"]
    assert np.isfinite(rep["meta"]["seconds"])


def test_uncached_path_matches_cached(tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    """Embedding through the store loader (embed_store) or the shared HU-cube cache gives the same result, and
    both report their progress through ``log`` (a line at the end at least)."""
    labels = make_labels(24, seed=7)
    store = MemoryStore(labels)
    kw = {"fractions": [1.0], "seeds": [0], "n_boot": 20, "plots": False}
    logs: dict[str, list[str]] = {"a": [], "b": []}
    a = run_protocol(
        {"m": str(tiny_model_dir)}, labels, tmp_path / "a", store=store, config=kw, log=logs["a"].append
    )
    b = run_protocol({"m": str(tiny_model_dir)}, labels, tmp_path / "b", store=store,
                     config={**kw, "cache_inputs": False}, log=logs["b"].append)  # fmt: skip
    for path, msgs in logs.items():
        done = [m for m in msgs if m.startswith("embedding m ") and "(100 %) |" in m]
        assert len(done) == 1 and done[0].startswith("embedding m 24/24"), (path, msgs)
    assert any(m.startswith("loading ") and "24/24 (100 %) |" in m for m in logs["a"]), logs["a"]
    from fmct.evaluate.embed import load_embeddings

    ea, eb = (load_embeddings(p / "embeddings" / "m.parquet") for p in (tmp_path / "a", tmp_path / "b"))
    eb = eb.select(ea.scan_ids)
    np.testing.assert_allclose(ea.cls, eb.cls, atol=2e-2)  # int16 rounding of the cached HU cubes
    assert a["results"][0]["n_test"] == b["results"][0]["n_test"]


def test_default_retrieval_map_beats_prevalence_on_separable_embeddings(labels, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels, FINDINGS3)
    rep = run_protocol(
        {"m": emb}, labels, tmp_path, config={"fractions": [1.0], "seeds": [0], "n_boot": 20, "plots": False}
    )
    per_set = rep["retrieval"]["m"]
    assert per_set, "retrieval computed on at least one test set"
    for r in per_set.values():
        for f in FINDINGS3:
            if r["map"][f] is not None:
                prevalence = float(labels.set_index("scan_id")[f].mean())
                assert r["map"][f] > prevalence + 0.1
    assert "Retrieval mAP" in (tmp_path / "report.md").read_text()


def test_labels_of_another_store_fail_with_the_reason(labels, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels, FINDINGS3)
    other = labels.assign(scan_id="x" + labels["scan_id"])  # ids that no embedding has
    with pytest.raises(ValueError, match=r"none of the 160 labelled scans has an embedding.*same store"):
        run_protocol({"a": emb}, other, tmp_path, config={"fractions": [1.0], "seeds": [0], "n_boot": 20})


def test_labelled_scans_missing_from_the_store_are_counted_with_examples(labels, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels, FINDINGS3)
    store = MemoryStore(labels.iloc[7:])  # the first 7 labelled scans were never ingested
    msgs: list[str] = []
    run_protocol(
        {"a": emb},
        labels,
        tmp_path,
        store=store,
        log=msgs.append,
        config={"fractions": [1.0], "seeds": [0], "n_boot": 20, "plots": False},
    )
    warned = [m for m in msgs if "no scan in the store" in m]
    assert len(warned) == 1, msgs
    assert warned[0].startswith(
        "warning: 7 of 160 labelled scan(s) have no scan in the store and are left out"
    )
    shown = warned[0].split("(e.g. ")[1].rstrip(")").split(", ")
    assert shown[-1] == "..." and len(shown) == 6 and set(shown[:5]) <= set(labels["scan_id"].iloc[:7])


def test_cnn_and_imported_backbones_are_compared_like_any_backbone(tmp_path) -> None:
    """A SimCLR-style SegResEncoder directory (fmct's own cube, 3 windows) and an imported one with its own
    preprocessing (SPL, one CT-FM window, voxels padded at 1 mm: ``input_fit: pad_crop``) sit in one protocol
    next to a ViT; each is embedded from cubes made its own way (the shared cache keys cubes by size and fit,
    and matches the uncached path), read with brain_max, and compared."""
    import torch

    from fmct.evaluate.embed import load_embeddings
    from fmct.models.hub import BackboneModel
    from fmct.models.monai_net import MonaiBackbone, segres_encoder_config

    labels = make_labels(24, seed=7)
    store = MemoryStore(labels)
    torch.manual_seed(0)
    windows = [[40, 80], [80, 200], [600, 2800]]
    cnn = BackboneModel(MonaiBackbone(segres_encoder_config(3, 4, (1, 1, 1), "group")),
                        {"spacing": 1.0, "windows": windows, "input_size": 16})  # fmt: skip
    ctfm_prep = {"spacing": 1.0, "windows": [[512.0, 3072.0]], "input_size": 16, "input_fit": "pad_crop"}
    ctfm = BackboneModel(
        MonaiBackbone(segres_encoder_config(1, 4, (1, 1, 1), "batch", axcodes="SPL")), ctfm_prep
    )
    models = {"simclr": str(cnn.save_pretrained(tmp_path / "cnn")),
              "ctfm": str(ctfm.save_pretrained(tmp_path / "ctfm")),
              "vit": str(tiny_backbone().save_pretrained(tmp_path / "vit")),
              "simclr-random": {"model": str(tmp_path / "cnn"), "random_init": True}}  # fmt: skip
    kw = {
        "fractions": [1.0],
        "seeds": [0],
        "n_boot": 20,
        "plots": False,
        "methods": ["linear"],
        "feature": "brain_max",
    }
    rep = run_protocol(models, labels, tmp_path / "a", store=store, config=kw)
    uncached = run_protocol({"ctfm": models["ctfm"]}, labels, tmp_path / "b", store=store,
                            config={**kw, "cache_inputs": False})  # fmt: skip
    assert {r["model"] for r in rep["results"]} == set(models)
    assert any((c["a"], c["b"]) == ("simclr", "simclr-random") for c in rep["comparisons"])
    a = load_embeddings(tmp_path / "a" / "embeddings" / "ctfm.parquet")
    b = load_embeddings(tmp_path / "b" / "embeddings" / "ctfm.parquet").select(a.scan_ids)
    np.testing.assert_allclose(a.cls, b.cls, atol=1e-4)  # the cache made pad_crop cubes, not resized ones
    assert uncached["results"][0]["n_test"] == next(
        r["n_test"] for r in rep["results"] if r["model"] == "ctfm"
    )
    c = load_embeddings(tmp_path / "a" / "embeddings" / "simclr.parquet")
    assert c.cls.shape == (24, 16) and np.isfinite(c.feature("brain_max")).all()
