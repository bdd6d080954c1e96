"""Where the findings signal is in a ViT backbone: each layer's patch tokens, pooled over the cranial cavity.

For a model directory (and ``--random-seeds`` random initialisations of its architecture), embeds the labelled
scans of ``--eval`` and pools the patch tokens of every layer (the patch embedding = the tokenizer, the output
of each transformer block, the final normed tokens) over the intracranial patches (the patches ``brain_max``
uses) with three readouts: ``max``, ``mean+std`` and ``stats`` (mean | std | max = ``brain_stats``). Each
(layer, readout) is scored by the evaluation protocol's linear probe, cross-fitted
(:func:`fmct.evaluate.crossfit.cross_fit`: 5 folds by patient, C chosen on validation patients), next to the
intracranial HU histogram of the same cubes. Writes ``experiments/results/readout_layers[_TAG].json``.

Usage::

    python experiments/readout_layers.py --model weights/demo-vit --eval ev/store --labels ev/labels.csv \\
        --n 400 --random-seeds 1
    python experiments/readout_layers.py ... --random-seeds 1 --patch-size 4 --tag random_patch4   # 16 mm tokens
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
READOUTS = ("max", "mean+std", "stats")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pooled(tokens, fractions):  # type: ignore[no-untyped-def]
    """``(B, N, D)`` tokens, ``(B, N)`` intracranial fractions -> {readout: (B, F)}: the library's
    ``brain_stats`` (mean | std | max over the patches ``brain_max`` uses) and its parts."""
    from fmct.preprocess.brain_mask import brain_stats_tokens

    stats = brain_stats_tokens(tokens, fractions)
    d = tokens.shape[-1]
    return {"max": stats[:, 2 * d :], "mean+std": stats[:, : 2 * d], "stats": stats}


def layer_features(model, store: str, scan_ids: list[str]) -> tuple[dict, np.ndarray]:  # type: ignore[no-untyped-def]
    """``({(layer, readout): (n, F)}, HU histograms (n, 34))`` for the scans of a store."""
    import torch

    from fmct.evaluate.embed import StoreInputs, model_input_spec
    from fmct.evaluate.hu_histogram import hu_histogram
    from fmct.preprocess.brain_mask import hu_from_channels, patch_fractions

    backbone = model.backbone
    size, windows = model_input_spec(model)
    grid = backbone.grid_size((1, len(windows), size, size, size))
    acts: dict[str, torch.Tensor] = {}
    hooks = [backbone.patch_embed.register_forward_hook(lambda m, i, o: acts.__setitem__("embed", o))]
    for k, blk in enumerate(backbone.blocks):
        hooks.append(
            blk.register_forward_hook(
                lambda m, i, o, k=k: acts.__setitem__(f"block{k + 1}", (o[0] if isinstance(o, tuple) else o))
            )
        )
    loader = torch.utils.data.DataLoader(
        StoreInputs(store, scan_ids, size, windows, with_brain=True),
        batch_size=8,
        collate_fn=lambda items: list(zip(*items, strict=True)),
    )
    feats: dict[tuple[str, str], list[np.ndarray]] = {}
    hists = []
    with torch.inference_mode():
        for _, xs, brains in loader:
            x = torch.stack(xs)
            acts["final"] = backbone.forward_features(x)["patch"]
            fr = torch.from_numpy(np.stack([patch_fractions(b.numpy(), grid) for b in brains]))
            for layer, t in acts.items():
                tokens = t if layer in ("embed", "final") else t[:, backbone.num_prefix :]
                for readout, f in pooled(tokens.float(), fr).items():
                    feats.setdefault((layer, readout), []).append(f.numpy())
            hists += [hu_histogram(v) for v in hu_from_channels(x, windows).numpy()]
    for h in hooks:
        h.remove()
    return {k: np.concatenate(v) for k, v in feats.items()}, np.stack(hists)


def linear_auroc(scan_ids: list[str], x: np.ndarray, rows) -> float:  # type: ignore[no-untyped-def]
    """Cross-fitted linear-probe macro AUROC of features ``x (n, F)`` (the protocol's probe)."""
    from fmct.evaluate.crossfit import cross_fit
    from fmct.evaluate.hu_histogram import HandFeatures
    from fmct.labels import FINDINGS

    emb = HandFeatures(scan_ids, x, x, None, {}, None)
    return round(
        float(cross_fit(emb, rows, "cls", FINDINGS, methods=("linear",)).auroc("linear")["macro"]), 3
    )


def random_backbone_with_patch(model_dir: Path, patch_size: int, seed: int):  # type: ignore[no-untyped-def]
    """``model_dir``'s backbone architecture with another patch size, at random initialisation (seed)."""
    import torch

    from fmct.models.factory import build_backbone
    from fmct.models.hub import read_config

    arch = {**read_config(model_dir)["architecture"], "patch_size": patch_size}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_backbone(arch).eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="backbone model directory")
    ap.add_argument("--eval", required=True, help="store of labelled held-out scans")
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv of those scans")
    ap.add_argument("--n", type=int, default=400, help="first N labelled scans of the store")
    ap.add_argument("--random-seeds", type=int, default=1, help="random initialisations to read as well")
    ap.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help="read only random initialisations of --model's architecture with this patch size instead",
    )
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    from fmct import load_model
    from fmct.labels.table import read_labels
    from fmct.store import open_store
    from fmct.train.finetune import frozen_backbone

    lab = read_labels(args.labels)
    ids = [s for s in open_store(args.eval).scan_ids if s in set(lab["scan_id"])][: args.n]
    rows = lab.set_index("scan_id").loc[ids].reset_index()
    models = {"pretrained": None, **{f"random{s}": s for s in range(args.random_seeds)}}
    if args.patch_size:
        models.pop("pretrained")
    result: dict = {
        "model": str(args.model),
        "n_scans": len(ids),
        "probe": "cross-fitted linear",
        "auroc": {},
    }
    result["patch_size"] = args.patch_size
    for name, seed in models.items():
        model = load_model(args.model) if seed is None else frozen_backbone(args.model, True, seed)
        if args.patch_size:
            model.backbone = random_backbone_with_patch(args.model, args.patch_size, seed)
        _log(f"embed {len(ids)} scans with {name}")
        feats, hists = layer_features(model, args.eval, ids)
        result["auroc"][name] = {
            f"{layer}/{ro}": linear_auroc(ids, x, rows) for (layer, ro), x in feats.items()
        }
        _log(f"{name}: {result['auroc'][name]}")
    result["auroc"]["hu_histogram"] = linear_auroc(ids, hists, rows)
    out = ROOT / "experiments" / "results" / f"readout_layers{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=2))
    _log(f"wrote {out}: HU histogram {result['auroc']['hu_histogram']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
