"""Supervised fine-tuning (full, LoRA, frozen-backbone linear) and training from scratch.

Multi-label BCE with ``pos_weight`` (unlabelled entries and findings with one class in the training
subset are masked), AdamW with layer-wise lr decay, early stopping on the validation split's macro
AUROC. The result is a :class:`fmct.models.hub.ClassifierModel` (LoRA merged into the weights), saved
with ``hub.save_pretrained(kind="classifier")`` and usable by ``fmct predict``.

Only train and val scan ids reach :func:`finetune`; test/OOD scans are scored afterwards with
:func:`predict_scans`.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from fmct.device import module_device, place
from fmct.evaluate.attentive import macro_auroc, masked_bce, pos_weight
from fmct.evaluate.embed import CubeCache, StoreInputs, _progress, model_input_fit, model_input_spec
from fmct.models.factory import build_backbone
from fmct.models.hub import BackboneModel, ClassifierModel, load_model
from fmct.models.vit3d import vit3d_config_from_preset
from fmct.preprocess.windows import DEFAULT_WINDOWS

#: LoRA targets: the ViT's attention and MLP linear layers (never the patch-embedding conv or heads)
LORA_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters (JSON-able; stored in the model's ``training`` record)."""

    mode: str = "full"  # full | lora | linear
    epochs: int = 10
    lr: float = 3e-4
    head_lr_scale: float = 10.0
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    batch_size: int = 4
    patience: int = 4
    fraction: float = 1.0
    seed: int = 0
    pooling: str = "cls"
    lora_r: int = 8
    lora_alpha: int = 16
    flip_prob: float = 0.5
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("full", "lora", "linear"):
            raise ValueError(f"mode must be full, lora or linear, got {self.mode!r}")
        checks = {
            "lr must be > 0": self.lr > 0,
            "head_lr_scale must be > 0": self.head_lr_scale > 0,
            "layer_decay must be in (0, 1]": 0 < self.layer_decay <= 1,
            "weight_decay must be >= 0": self.weight_decay >= 0,
            "epochs must be >= 1": self.epochs >= 1,
            "batch_size must be >= 1": self.batch_size >= 1,
            "patience must be >= 0": self.patience >= 0,
            "lora_r must be >= 1": self.lora_r >= 1,
            "flip_prob must be in [0, 1]": 0 <= self.flip_prob <= 1,
        }
        for message, ok in checks.items():
            if not ok:
                name = message.split()[0]
                raise ValueError(f"{message}, got {getattr(self, name)!r}")


def build_model(
    model: Any = None,
    findings: Sequence[str] = (),
    *,
    scratch: bool = False,
    arch: str | dict[str, Any] | None = None,
    input_size: int = 64,
    preprocessing: dict[str, Any] | None = None,
    pooling: str = "cls",
    seed: int = 0,
) -> Any:
    """A :class:`ClassifierModel` with a fresh linear head on the given or a new backbone.

    Args:
        model: a model directory or a loaded Backbone/ClassifierModel; None to build ``arch``.
        scratch: re-initialise the backbone randomly (same architecture) — the scratch baseline.
        arch: ``"vit3d"``, ``"resnet3d"``, a preset name (``"tiny"``…) or an architecture dict, used
            when ``model`` is None.
        preprocessing: the preprocessing dict (store's config); ``input_size`` is added.
        seed: torch seed of the random initialisation (the head, and a new or ``scratch`` backbone), so the
            same call builds the same weights in every process (torch seeds each process differently);
            the global torch RNG is left as it was.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        bb = _backbone(model, scratch, arch, input_size, preprocessing)
        return ClassifierModel.from_backbone(bb, list(findings), head_type="linear", pooling=pooling)


def _backbone(
    model: Any, scratch: bool, arch: str | dict[str, Any] | None, input_size: int, preprocessing: dict | None
) -> Any:
    """The backbone of :func:`build_model` (drawn from the global torch RNG where it is new)."""
    if model is not None:
        if isinstance(model, str | Path):
            model = load_model(model)
        bb = model.as_backbone() if isinstance(model, ClassifierModel) else model
        if scratch:
            bb = BackboneModel(
                build_backbone(bb.architecture), bb.preprocessing, architecture=bb.architecture
            )
    else:
        if isinstance(arch, dict):
            arch_d = dict(arch)
        elif arch in (None, "vit3d", "vit"):
            arch_d = {"type": "vit3d", "img_size": input_size, "embed_dim": 192, "depth": 6, "num_heads": 3}
        elif arch in ("resnet3d", "resnet"):
            arch_d = {"type": "resnet3d"}
        else:
            arch_d = vit3d_config_from_preset(str(arch), img_size=input_size).to_dict()
        prep = dict(preprocessing or {"windows": [list(w) for w in DEFAULT_WINDOWS]})
        prep["input_size"] = int(input_size)
        bb = BackboneModel(build_backbone(arch_d), prep, architecture=arch_d)
    return bb


def frozen_backbone(model: Any, random_init: bool = False, seed: int = 0) -> Any:
    """The backbone a probe embeds with: that of ``model`` (a model directory or a loaded model), or with
    ``random_init`` the same architecture and preprocessing at random initialisation (torch seed ``seed``),
    the untrained reference a pretrained backbone is compared with. The global torch RNG is left as it was."""
    return build_model(model, ["x"], scratch=random_init, seed=seed).as_backbone()


def _param_groups(model: Any, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups: backbone params with lr * decay^(L - layer_id), head at lr * head_lr_scale."""
    bb = model.backbone
    n_layers = int(getattr(bb, "num_layers", 1))
    no_wd = set(getattr(bb, "no_weight_decay", set)())
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("head."):
            lr = cfg.lr * cfg.head_lr_scale
        else:
            local = name.removeprefix("backbone.")
            lid = bb.layer_id(local) if hasattr(bb, "layer_id") else n_layers
            lr = cfg.lr * cfg.layer_decay ** (n_layers - lid)
        wd = 0.0 if (p.ndim <= 1 or name.removeprefix("backbone.") in no_wd) else cfg.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def _apply_lora(model: Any, cfg: FinetuneConfig) -> Any:
    from peft import LoraConfig, inject_adapter_in_model

    if getattr(model.backbone, "config", None) is None or model.architecture.get("type", "vit3d") != "vit3d":
        raise ValueError("LoRA fine-tuning needs a ViT backbone (use --mode full for ResNet baselines)")
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=LORA_TARGETS, lora_dropout=0.0)
    model.backbone = inject_adapter_in_model(lcfg, model.backbone)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or name.startswith("head.")
    return model


def merge_lora(module: torch.nn.Module) -> torch.nn.Module:
    """Merge injected LoRA adapters into the base weights and remove them (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, sub in list(module.named_modules()):
        if isinstance(sub, LoraLayer):
            sub.merge()
            parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            setattr(parent, name.rsplit(".", 1)[-1], sub.get_base_layer())
    return module


def finetune(
    model: Any,
    store: Any,
    train_ids: Sequence[str],
    y_train: np.ndarray,
    val_ids: Sequence[str],
    y_val: np.ndarray,
    findings: Sequence[str],
    cfg: FinetuneConfig | None = None,
    out_dir: str | Path | None = None,
    progress: bool | Callable[[int, int], None] = False,
    cache: dict[str, CubeCache] | None = None,
    device: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``model`` (a ClassifierModel from :func:`build_model`) on train, select on val.

    Args:
        store: store root or object with ``.load(scan_id)``.
        y_train / y_val: ``(n, F)`` labels (NaN = unlabelled).
        out_dir: when given, the best model is saved there (classifier directory) after training,
            and ``checkpoint/`` holds the best weights so far during training.
        cache: optional ``{"train": CubeCache, "val": CubeCache}`` to reuse loaded scans.
        device: train there (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; the model is moved, and stays
            there), in fp32; None: where the model is. Scans stay in host memory, one batch at a time goes
            to the device.

    Returns:
        ``(model, info)`` — the best-on-val model (eval mode, LoRA merged) and a dict with ``history``
        (per-epoch loss and val macro AUROC), ``best_epoch``, ``best_val_macro_auroc``, ``na_findings``.
    """
    cfg = cfg or FinetuneConfig()
    torch.manual_seed(cfg.seed)
    size, windows = model_input_spec(model)
    y_train = np.asarray(y_train, dtype=np.float64)
    y_val = np.asarray(y_val, dtype=np.float64)
    ok = np.asarray(
        [np.unique(y_train[np.isfinite(y_train[:, j]), j]).size == 2 for j in range(len(findings))]
    )
    cache = cache or {}
    fit = model_input_fit(model)
    tr = cache.get("train") or CubeCache(store, train_ids, size, progress, fit)
    va = cache.get("val") or CubeCache(store, val_ids, size, progress, fit)
    model = _set_trainable(model, cfg)
    place(model, device)  # after LoRA: its adapters are moved too
    steps = _Steps(model, cfg, tr, windows, np.where(ok[None, :], y_train, np.nan), pos_weight(y_train))
    history: list[dict[str, float]] = []
    keeper = _BestOnVal()
    t0 = time.time()
    with _progress(progress, steps.total, f"fine-tuning ({cfg.mode})") as advance:
        for epoch in range(cfg.epochs):
            loss = steps.epoch(advance)
            val_scores = predict_cache(model, va, windows, cfg.batch_size)
            val_scores[:, ~ok] = np.nan
            score = macro_auroc(y_val, val_scores) if len(va.scan_ids) else float("nan")
            history.append({"epoch": epoch, "loss": loss, "val_macro_auroc": score})
            if keeper.improved(model, score, epoch):
                if out_dir is not None and cfg.mode != "lora":
                    _save(model, Path(out_dir) / "checkpoint", findings, cfg, history, ok)
            elif keeper.bad >= cfg.patience:
                break
            if cfg.max_minutes is not None and time.time() - t0 > 60 * cfg.max_minutes:
                break
    model = keeper.restore(model, cfg)
    info = {
        "history": history,
        "best_epoch": keeper.epoch,
        "best_val_macro_auroc": None if not np.isfinite(keeper.best) else float(keeper.best),
        "na_findings": [f for f, o in zip(findings, ok, strict=True) if not o],
        "n_train": len(tr.scan_ids),
        "n_val": len(va.scan_ids),
        "seconds": time.time() - t0,
    }
    if out_dir is not None:
        _save(model, Path(out_dir), findings, cfg, history, ok, info)
        shutil.rmtree(Path(out_dir) / "checkpoint", ignore_errors=True)
    return model, info


def _set_trainable(model: Any, cfg: FinetuneConfig) -> Any:
    """The model as ``cfg.mode`` trains it: LoRA adapters added (``lora``), only the head trainable
    (``linear``), or unchanged (``full``)."""
    if cfg.mode == "lora":
        return _apply_lora(model, cfg)
    if cfg.mode == "linear":
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("head.")
    return model


class _Steps:
    """The optimisation of one fine-tuning: AdamW (layer-wise lr decay) with a one-cycle schedule over
    ``cfg.epochs`` epochs of shuffled batches (random left-right flips), masked BCE with ``pos_weight``.

    Args:
        target: ``(n, F)`` training labels, NaN where unlabelled or the finding is not trained.
        pos_weight: ``(F,)`` negatives / positives per finding.
    """

    def __init__(
        self,
        model: Any,
        cfg: FinetuneConfig,
        cache: CubeCache,
        windows: Sequence[Sequence[float]],
        target: np.ndarray,
        pos_weight: np.ndarray,
    ) -> None:
        self.model, self.cfg, self.cache, self.windows = model, cfg, cache, windows
        self.g = torch.Generator().manual_seed(cfg.seed)
        self.dev = module_device(model)
        self.target = torch.as_tensor(target, dtype=torch.float32, device=self.dev)
        self.pw = torch.as_tensor(pos_weight, dtype=torch.float32, device=self.dev)
        self.opt = torch.optim.AdamW(_param_groups(model, cfg))
        steps_per_epoch = max(1, int(np.ceil(len(cache.scan_ids) / cfg.batch_size)))
        self.total = cfg.epochs * steps_per_epoch
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt,
            max_lr=[grp["lr"] for grp in self.opt.param_groups],
            total_steps=self.total,
            pct_start=0.1,
        )

    def epoch(self, advance: Callable[[int], None]) -> float:
        """Train one epoch (the backbone stays in eval mode for ``linear``); returns the mean batch loss."""
        model, cfg, g = self.model, self.cfg, self.g
        model.train()
        if cfg.mode == "linear":
            model.backbone.eval()
        perm = torch.randperm(len(self.cache.scan_ids), generator=g)
        losses = []
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            x = self.cache.batch(idx, self.windows).to(self.dev, non_blocking=True)
            if cfg.flip_prob > 0 and torch.rand((), generator=g) < cfg.flip_prob:
                x = x.flip(2)  # left-right (X = R in RAS)
            loss = masked_bce(model(x), self.target[idx.to(self.dev)], self.pw)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            self.opt.step()
            self.sched.step()
            losses.append(float(loss.detach()))
            advance(1)
        return float(np.mean(losses))


class _BestOnVal:
    """Early stopping on the validation macro AUROC: keeps the weights of the best epoch (the first epoch
    when no score is finite) and counts the epochs since (``bad``)."""

    def __init__(self) -> None:
        self.best, self.epoch, self.bad = -np.inf, -1, 0
        self.state: dict[str, torch.Tensor] | None = None

    def improved(self, model: Any, score: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s ``score``; True (weights kept) when it beats the best by 1e-6."""
        if self.state is None or (np.isfinite(score) and score > self.best + 1e-6):
            self.best, self.epoch, self.bad = (score if np.isfinite(score) else -np.inf), epoch, 0
            self.state = copy.deepcopy({k: v.detach().clone() for k, v in model.state_dict().items()})
            return True
        self.bad += 1
        return False

    def restore(self, model: Any, cfg: FinetuneConfig) -> Any:
        """The model with the best weights, LoRA merged, every parameter trainable again, in eval mode."""
        assert self.state is not None
        model.load_state_dict(self.state)
        if cfg.mode == "lora":
            merge_lora(model.backbone)
        for p in model.parameters():
            p.requires_grad = True
        model.eval()
        return model


def _save(
    model: Any,
    out: Path,
    findings: Sequence[str],
    cfg: FinetuneConfig,
    history: list[dict[str, float]],
    ok: np.ndarray,
    info: dict[str, Any] | None = None,
) -> None:
    model.training_info = {
        "task": "finetune",
        "config": asdict(cfg),
        "history": history,
        "na_findings": [f for f, o in zip(findings, ok, strict=True) if not o],
        **({k: v for k, v in info.items() if k not in ("history",)} if info else {}),
    }
    model.save_pretrained(out)


@torch.no_grad()
def predict_cache(model: Any, cache: CubeCache, windows: Sequence[Sequence[float]], bs: int) -> np.ndarray:
    """``(n, L)`` sigmoid probabilities of the cached scans, computed where the model is (fp32)."""
    model.eval()
    dev = module_device(model)
    outs = [
        torch.sigmoid(model(cache.batch(torch.arange(i, min(i + bs, len(cache.scan_ids))), windows).to(dev)))
        .cpu()
        .numpy()
        for i in range(0, len(cache.scan_ids), bs)
    ]
    n_out = len(model.labels)
    return np.concatenate(outs).astype(np.float64) if outs else np.zeros((0, n_out))


@torch.no_grad()
def predict_scans(
    model: Any, store: Any, scan_ids: Sequence[str], batch_size: int = 4, workers: int = 0
) -> np.ndarray:
    """``(n, L)`` sigmoid probabilities of a classifier for scans of a store (store order kept), computed
    where the model is (fp32)."""

    size, windows = model_input_spec(model)
    model.eval()
    dev = module_device(model)
    loader = DataLoader(
        StoreInputs(store, scan_ids, size, windows, fit=model_input_fit(model)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=lambda items: torch.stack([x for _, x in items]),
        pin_memory=dev.type == "cuda",
    )
    outs = [torch.sigmoid(model(x.to(dev, non_blocking=True))).cpu().numpy() for x in loader]
    return np.concatenate(outs).astype(np.float64) if outs else np.zeros((0, len(model.labels)))
