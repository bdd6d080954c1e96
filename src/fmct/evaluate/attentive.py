"""Attentive probe: a learned query cross-attends to frozen patch tokens (torch), early-stopped on val.

Like the linear probe, only train and validation tokens are passed to :func:`fit_attentive_probe`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fmct.device import module_device, place
from fmct.evaluate.metrics import auroc_by_finding


def macro_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mean AUROC over findings with both classes among the labelled scans (NaN when none)."""

    macro = auroc_by_finding(y, s, [str(j) for j in range(y.shape[1])])["macro"]
    return float("nan") if macro is None else macro


def pos_weight(y: np.ndarray) -> np.ndarray:
    """BCE ``pos_weight`` per finding = n_neg / n_pos over labelled scans (1 when undefined), clipped."""
    pos = np.nansum(y == 1, axis=0).astype(np.float64)
    neg = np.nansum(y == 0, axis=0).astype(np.float64)
    w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return np.clip(w, 1.0, 100.0)


def masked_bce(logits, target, pw):  # type: ignore[no-untyped-def]
    """Mean BCE over labelled entries (NaN targets ignored). torch tensors ``(B, F)``."""
    import torch
    import torch.nn.functional as F

    m = torch.isfinite(target)
    t = torch.nan_to_num(target, nan=0.0)
    loss = F.binary_cross_entropy_with_logits(logits, t, pos_weight=pw, reduction="none")
    return (loss * m).sum() / m.sum().clamp(min=1)


@dataclass
class AttentiveProbe:
    """A fitted attentive probe; ``ok`` marks findings that had both classes in train."""

    findings: list[str]
    module: object
    ok: np.ndarray

    def predict_proba(self, tokens: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """``(n, N, D) -> (n, F)`` probabilities (computed where the module is, in fp32); NaN for n/a
        findings."""
        import torch

        self.module.eval()  # type: ignore[attr-defined]
        dev = module_device(self.module)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(tokens), batch_size):
                x = torch.as_tensor(np.asarray(tokens[i : i + batch_size], dtype=np.float32)).to(dev)
                outs.append(torch.sigmoid(self.module(x)).cpu().numpy())  # type: ignore[operator]
        p = np.concatenate(outs) if outs else np.zeros((0, len(self.findings)))
        p = p.astype(np.float64)
        p[:, ~self.ok] = np.nan
        return p


def fit_attentive_probe(
    tok_train: np.ndarray,
    y_train: np.ndarray,
    tok_val: np.ndarray | None,
    y_val: np.ndarray | None,
    findings: Sequence[str],
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 32,
    patience: int = 5,
    num_heads: int = 4,
    seed: int = 0,
    device: object = None,
) -> AttentiveProbe:
    """Train :class:`fmct.models.heads.AttentiveClassifier` on patch tokens ``(n, N, D)``.

    Masked BCE with ``pos_weight``; the epoch with the best validation macro AUROC is kept (early
    stopping after ``patience`` epochs without improvement). Without a usable val split, the last
    epoch is kept.

    ``device``: train there (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default the CPU), in fp32; the
    tokens stay in host memory and go to the device one batch at a time.
    """
    import torch

    from fmct.models.heads import AttentiveClassifier

    y_train = np.asarray(y_train, dtype=np.float64)
    ok = np.asarray(
        [np.unique(y_train[np.isfinite(y_train[:, j]), j]).size == 2 for j in range(y_train.shape[1])]
    )
    d = tok_train.shape[-1]
    heads = num_heads if d % num_heads == 0 else 1
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = AttentiveClassifier(d, len(findings), num_heads=heads)
    dev = place(module, device)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    target = torch.as_tensor(np.where(ok[None, :], y_train, np.nan), dtype=torch.float32, device=dev)
    pw = torch.as_tensor(pos_weight(y_train), dtype=torch.float32, device=dev)
    x_all = torch.as_tensor(np.asarray(tok_train, dtype=np.float32))
    probe = AttentiveProbe(list(findings), module, ok)
    best, best_state, bad = -np.inf, copy.deepcopy(module.state_dict()), 0
    use_val = tok_val is not None and y_val is not None and len(tok_val) > 0
    for _ in range(epochs):
        module.train()
        perm = torch.randperm(len(x_all), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = masked_bce(module(x_all[idx].to(dev, non_blocking=True)), target[idx.to(dev)], pw)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if use_val:
            score = macro_auroc(np.asarray(y_val, dtype=np.float64), probe.predict_proba(tok_val))
            if np.isfinite(score) and score > best + 1e-6:
                best, best_state, bad = score, copy.deepcopy(module.state_dict()), 0
            else:
                bad += 1
                if bad >= patience:
                    break
    if use_val and np.isfinite(best):
        module.load_state_dict(best_state)
    return probe
