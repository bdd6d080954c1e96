"""Model directories: ``config.json`` + ``model.safetensors`` + ``README.md`` (model card).

Weights are read only from safetensors (never pickle). ``load_model(dir_or_repo_id)`` returns a
:class:`BackboneModel` or a :class:`ClassifierModel` in eval mode; a Hugging Face Hub repo id ``owner/name`` is
downloaded first (:mod:`fmct.models.hf_hub`). The classes follow the Hub's conventions: ``from_pretrained``,
``save_pretrained`` and ``push_to_hub``.

config.json keys: ``fmct_version``, ``kind`` ("backbone" | "classifier"), ``name``, ``architecture``
(``{"type": "vit3d" | "resnet3d", ...}``), ``preprocessing`` (PreprocessConfig dict + ``input_size``),
``labels`` and ``head`` (classifiers), ``training``, ``weights`` (file name), ``weights_sha256``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmct import __version__
from fmct.device import place, resolve_device
from fmct.fileperm import as_umask
from fmct.infer.predict import probabilities
from fmct.models.factory import architecture_of, build_backbone
from fmct.models.heads import AttentiveClassifier, LinearClassifier
from fmct.models.model_card import render_model_card
from fmct.models.readout import BRAIN_READOUTS, canonical_readout, pool_tokens, readout_width
from fmct.preprocess.brain_mask import input_patch_fractions, soft_tissue_window
from fmct.preprocess.model_input import model_input_for
from fmct.preprocess.windows import DEFAULT_WINDOWS

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
KINDS = ("backbone", "classifier")


def _version() -> str:
    return __version__


def pool_features(
    out: dict[str, torch.Tensor], pooling: str = "cls", brain_fractions: torch.Tensor | None = None
) -> torch.Tensor:
    """Pool ``forward_features`` output to ``(B, F)`` (:func:`fmct.models.readout.pool_tokens`)."""
    return pool_tokens(out, pooling, brain_fractions)


def _brain_grid(backbone: nn.Module) -> Any:
    """The backbone's ``grid_size(input_shape)`` (ViT patches, ResNet final feature map: the input is split
    into that many equal blocks); the brain readouts (brain_max, brain_stats) need one."""
    grid = getattr(backbone, "grid_size", None)
    if grid is None:
        raise ValueError(
            f"brain_max / brain_stats pooling needs a backbone with a token grid, not {type(backbone).__name__}"
        )
    return grid


def _check_brain_readout(backbone: nn.Module, preprocessing: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless a brain readout can run on this backbone and these input windows."""

    _brain_grid(backbone)
    soft_tissue_window(preprocessing.get("windows", DEFAULT_WINDOWS))


def _check_preprocessing(preprocessing: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(preprocessing, dict) or "input_size" not in preprocessing:
        raise ValueError(
            "preprocessing must be a dict holding 'input_size' (PreprocessConfig.to_dict() + input_size)"
        )
    return json.loads(json.dumps(preprocessing))  # JSON-able copy (tuples -> lists)


class _ModelDirectory:
    """What backbone and classifier models share: their ``config.json`` and how they are saved.

    Subclasses set ``kind``, ``name``, ``architecture``, ``preprocessing``, ``training_info`` and may add
    config entries (which are also :func:`save_pretrained` keywords) in :meth:`_extra_config`.
    """

    kind: str
    name: str
    architecture: dict[str, Any]
    preprocessing: dict[str, Any]
    training_info: dict[str, Any]

    def _extra_config(self) -> dict[str, Any]:
        return {}

    def pool_output(self, out: dict[str, torch.Tensor], x: torch.Tensor, pooling: str) -> torch.Tensor:
        """:func:`pool_features` of ``forward_features(x)``; a brain readout (``brain_max``, ``brain_stats``)
        finds the cavity in ``x`` itself."""
        fractions = None
        if canonical_readout(pooling) in BRAIN_READOUTS:
            grid = _brain_grid(self.backbone)(x.shape)
            fractions = input_patch_fractions(x, self.preprocessing.get("windows", DEFAULT_WINDOWS), grid)
        return pool_features(out, pooling, fractions)

    @property
    def input_size(self) -> int:
        return int(self.preprocessing["input_size"])

    @property
    def config(self) -> dict[str, Any]:
        """The config.json dict of this model."""
        return {
            "fmct_version": _version(),
            "kind": self.kind,
            "name": self.name,
            "architecture": self.architecture,
            "preprocessing": self.preprocessing,
            **self._extra_config(),
            "training": self.training_info,
        }

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        card: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **push_kwargs: Any,
    ) -> Path:
        """Write this model as a model directory (atomic); returns the directory.

        ``card``: model-card fields (:func:`fmct.models.model_card.render_model_card`). With ``push_to_hub``,
        the directory is then pushed to ``repo_id`` (default: the directory's name) as :meth:`push_to_hub`
        does, ``push_kwargs`` passed on.
        """
        out = save_pretrained(
            self,
            save_directory,
            kind=self.kind,
            architecture=self.architecture,
            preprocessing=self.preprocessing,
            name=self.name,
            card=card,
            training=self.training_info,
            **self._extra_config(),
        )
        if push_to_hub:
            from fmct.models.hf_hub import push_model_dir

            push_model_dir(out, repo_id or Path(out).name, **push_kwargs)
        return out

    def push_to_hub(
        self,
        repo_id: str,
        *,
        card: dict[str, Any] | None = None,
        token: str | None = None,
        private: bool | None = None,
        branch: str | None = None,
        create_pr: bool = False,
        commit_message: str = "Upload fmct model",
    ) -> str:
        """Upload this model (config.json, model.safetensors, README.md) to the Hugging Face Hub repository
        ``repo_id`` (created when missing); returns the commit URL.

        Raises:
            fmct.models.hf_hub.HubPushError: one sentence when no token is set (``hf auth login`` or
                ``HF_TOKEN``), HF_HUB_OFFLINE is set, or the Hub cannot be reached or refuses.
        """
        from fmct.models.hf_hub import HubPushError, push_model_dir

        with tempfile.TemporaryDirectory(prefix="fmct-push-") as tmp:
            try:
                folder = self.save_pretrained(Path(tmp) / "model", card=card)
            except OSError as e:
                raise HubPushError(f"cannot push to {repo_id}: writing the model failed ({e})") from None
            return push_model_dir(
                folder,
                repo_id,
                token=token,
                private=private,
                branch=branch,
                create_pr=create_pr,
                commit_message=commit_message,
            )


class BackboneModel(_ModelDirectory, nn.Module):
    """A pretrained backbone plus the preprocessing it expects.

    Attributes: ``backbone`` (ViT3D or ResNet3D), ``preprocessing`` (dict), ``input_size`` (int voxels),
    ``architecture`` (dict), ``name``, ``training`` (dict).
    """

    kind = "backbone"

    def __init__(
        self,
        backbone: nn.Module,
        preprocessing: dict[str, Any],
        *,
        architecture: dict[str, Any] | None = None,
        name: str = "fmct-backbone",
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.preprocessing = _check_preprocessing(preprocessing)
        self.architecture = architecture if architecture is not None else architecture_of(backbone)
        self.name = name
        self.training_info = dict(training or {})

    @property
    def embed_dim(self) -> int:
        return int(self.backbone.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S, S) -> (B, D)`` CLS features (differentiable)."""
        return self.backbone.forward_features(x)["cls"]

    def features(self, x: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
        """Pooled features ``(B, F)`` (see :func:`pool_features`); differentiable."""
        return self.pool_output(self.backbone.forward_features(x), x, pooling)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, C, S, S, S)`` -> ``{"cls": (B, D), "mean_patch": (B, D), "patch": (B, N, D)}`` (no grad).

        Call ``.eval()`` first if the model was switched to training mode (drop-path).
        """
        out = self.backbone.forward_features(x)
        return {"cls": out["cls"], "mean_patch": out["patch"].mean(1), "patch": out["patch"]}

    @classmethod
    def from_pretrained(cls, dir_or_repo_id: str | Path, **kwargs: Any) -> BackboneModel:
        """Load a backbone from a directory or Hub repo id (:func:`load_model`'s keywords); a classifier's
        backbone is returned without its head."""
        m = load_model(dir_or_repo_id, **kwargs)
        if isinstance(m, ClassifierModel):
            return m.as_backbone()
        return m


def build_head(head: dict[str, Any], n_labels: int) -> nn.Module:
    """Classifier head from its config: ``{"type": "linear", "in_features", "pooling"}`` or
    ``{"type": "attentive", "in_features", "num_heads"}`` (attentive heads read patch tokens)."""
    kind = head.get("type")
    if kind == "linear":
        if head.get("pooling", "cls") != "tokens":
            canonical_readout(head.get("pooling", "cls"))
        return LinearClassifier(int(head["in_features"]), n_labels)
    if kind == "attentive":
        return AttentiveClassifier(
            int(head["in_features"]), n_labels, num_heads=int(head.get("num_heads", 4))
        )
    raise ValueError(f"unknown head type {kind!r}; choose 'linear' or 'attentive'")


class ClassifierModel(_ModelDirectory, nn.Module):
    """Backbone + classification head + finding names.

    ``forward(x (B, C, S, S, S)) -> logits (B, L)``; ``predict_proba`` -> sigmoid probabilities;
    ``predict(path_or_volume) -> {finding: probability}``.
    """

    kind = "classifier"

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        labels: list[str],
        preprocessing: dict[str, Any],
        head_config: dict[str, Any],
        *,
        architecture: dict[str, Any] | None = None,
        name: str = "fmct-classifier",
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.labels = list(labels)
        self.preprocessing = _check_preprocessing(preprocessing)
        self.head_config = dict(head_config)
        self.architecture = architecture if architecture is not None else architecture_of(backbone)
        self.name = name
        self.training_info = dict(training or {})
        n_out = getattr(head, "n_labels", len(self.labels))
        if n_out != len(self.labels):
            raise ValueError(f"head has {n_out} outputs but {len(self.labels)} labels were given")

    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Module,
        labels: list[str],
        *,
        head_type: str = "linear",
        pooling: str = "cls",
        num_heads: int = 4,
        preprocessing: dict[str, Any] | None = None,
        name: str = "fmct-classifier",
        training: dict[str, Any] | None = None,
    ) -> ClassifierModel:
        """New classifier (fresh head) on a backbone or a :class:`BackboneModel` (its preprocessing is kept)."""
        arch = None
        if isinstance(backbone, BackboneModel):
            preprocessing = preprocessing or backbone.preprocessing
            arch = backbone.architecture
            backbone = backbone.backbone
        if preprocessing is None:
            raise ValueError("preprocessing is required when passing a bare backbone")
        if head_type == "linear" and canonical_readout(pooling) in BRAIN_READOUTS:
            _check_brain_readout(backbone, preprocessing)
        d = int(backbone.embed_dim)
        if head_type == "linear":
            head_cfg = {
                "type": "linear",
                "in_features": readout_width(pooling, d),
                "pooling": canonical_readout(pooling),
            }
        else:
            head_cfg = {"type": head_type, "in_features": d, "num_heads": num_heads, "pooling": "tokens"}
        head = build_head(head_cfg, len(labels))
        return cls(
            backbone, head, labels, preprocessing, head_cfg, architecture=arch, name=name, training=training
        )

    def _extra_config(self) -> dict[str, Any]:
        return {"labels": self.labels, "head": self.head_config}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S, S) -> (B, L)`` logits."""
        out = self.backbone.forward_features(x)
        if self.head_config["type"] == "attentive":
            return self.head(out["patch"])
        return self.head(self.pool_output(out, x, self.head_config.get("pooling", "cls")))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S, S) -> (B, L)`` sigmoid probabilities (no grad)."""
        return torch.sigmoid(self.forward(x))

    def model_input(self, path_or_volume: Any) -> torch.Tensor:
        """The ``(C, S, S, S)`` network input of a scan path / Volume, preprocessed as at training time.

        A tensor or array already shaped ``(C, S, S, S)`` is passed through unchanged.
        """

        if isinstance(path_or_volume, torch.Tensor | np.ndarray):
            x = torch.as_tensor(path_or_volume, dtype=torch.float32)
            if x.ndim != 4:
                raise ValueError(f"expected a (C, S, S, S) model input, got shape {tuple(x.shape)}")
            return x

        pre = {"windows": DEFAULT_WINDOWS, **self.preprocessing, "input_size": self.input_size}
        return model_input_for(path_or_volume, pre)[0]

    def predict(self, path_or_volume: Any, device: str | torch.device | None = None) -> dict[str, float]:
        """``{finding: probability}`` for one scan (a NIfTI path, DICOM folder, Volume or model input).

        ``device``: move the model there first (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``); None: run
        where it is. On CUDA under bf16 autocast, on the CPU in fp32 (as ``fmct predict``).
        """

        place(self, device)
        probs = probabilities(self, self.model_input(path_or_volume)[None])[0]
        return {name: float(p) for name, p in zip(self.labels, probs.tolist(), strict=True)}

    def as_backbone(self) -> BackboneModel:
        """The backbone (shared, not copied) as a :class:`BackboneModel`."""
        return BackboneModel(
            self.backbone,
            self.preprocessing,
            architecture=self.architecture,
            name=self.name,
            training=self.training_info,
        )

    @classmethod
    def from_pretrained(cls, dir_or_repo_id: str | Path, **kwargs: Any) -> ClassifierModel:
        """Load a classifier from a directory or Hub repo id (:func:`load_model`'s keywords)."""
        m = load_model(dir_or_repo_id, **kwargs)
        if not isinstance(m, ClassifierModel):
            raise ValueError(f"{dir_or_repo_id}: is a {m.kind} directory, not a classifier")
        return m


# ---------------------------------------------------------------------------------------------- save / load
def _build(config: dict[str, Any]) -> BackboneModel | ClassifierModel:
    kind = config.get("kind")
    if kind not in KINDS:
        raise ValueError(f"config.json 'kind' must be one of {KINDS}, got {kind!r}")
    arch = config.get("architecture")
    if not isinstance(arch, dict):
        raise ValueError("config.json has no 'architecture' dict")
    backbone = build_backbone(arch)
    common = dict(architecture=arch, name=config.get("name", f"fmct-{kind}"), training=config.get("training"))
    if kind == "backbone":
        return BackboneModel(backbone, config.get("preprocessing") or {}, **common)
    labels, head_cfg = config.get("labels"), config.get("head")
    if not labels or not isinstance(head_cfg, dict):
        raise ValueError("a classifier config.json needs 'labels' and a 'head' dict")
    head = build_head(head_cfg, len(labels))
    return ClassifierModel(backbone, head, labels, config.get("preprocessing") or {}, head_cfg, **common)


def _state_dict_for(module: nn.Module, kind: str) -> dict[str, torch.Tensor]:
    if isinstance(module, BackboneModel | ClassifierModel) or hasattr(module, "backbone"):
        sd = module.state_dict()
        if kind == "backbone":
            sd = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    else:  # a bare backbone
        sd = {f"backbone.{k}": v for k, v in module.state_dict().items()}
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def _load_strict(model: nn.Module, sd: dict[str, torch.Tensor], where: str) -> None:
    missing, unexpected = [], []
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad_shape = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"{where}: weights do not match the architecture in config.json "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"wrong shape {bad_shape[:5]})"
        )
    model.load_state_dict(sd, strict=True)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (the weights' checksum in config.json)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_pretrained(
    module: nn.Module,
    out_dir: str | Path,
    *,
    kind: str,
    architecture: dict[str, Any] | None = None,
    preprocessing: dict[str, Any],
    labels: list[str] | None = None,
    head: dict[str, Any] | None = None,
    name: str = "fmct-model",
    card: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + ``README.md`` into ``out_dir`` atomically.

    ``module`` is a bare backbone (ViT3D / ResNet3D), a :class:`BackboneModel`, a :class:`ClassifierModel`
    or any module with ``.backbone`` (and ``.head`` for classifiers) whose state dict matches the model
    rebuilt from ``architecture`` / ``head``; this is checked before anything is written.
    ``architecture`` defaults to ``module.backbone.config.to_dict()`` / ``module.config.to_dict()``.
    Files are written into a temporary folder next to ``out_dir`` and moved in with ``os.replace``.
    """
    from safetensors.torch import save_file

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if architecture is None:
        architecture = getattr(module, "architecture", None) or architecture_of(
            getattr(module, "backbone", module)
        )
    config: dict[str, Any] = {
        "fmct_version": _version(),
        "kind": kind,
        "name": name,
        "architecture": json.loads(json.dumps(architecture)),
        "preprocessing": _check_preprocessing(preprocessing),
    }
    if kind == "classifier":
        if not labels or head is None:
            raise ValueError("a classifier needs labels and a head config")
        config["labels"] = list(labels)
        config["head"] = json.loads(json.dumps(head))
    config["training"] = json.loads(json.dumps(training or {}, default=str))
    sd = _state_dict_for(module, kind)
    rebuilt = _build(config)
    _load_strict(rebuilt, sd, f"save_pretrained({out_dir})")  # fail before writing anything
    n_params = sum(p.numel() for p in rebuilt.parameters())

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save_file(sd, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "fmct_kind": kind})
        config["weights"] = WEIGHTS_NAME
        config["weights_sha256"] = file_sha256(tmp / WEIGHTS_NAME)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_NAME).write_text(render_model_card(config, card, n_params))
        as_umask(tmp)  # mkdtemp made it 0700: group-readable as a plain mkdir would be
        if out.exists():
            if not out.is_dir():
                raise FileExistsError(f"{out}: exists and is not a directory")
            for fname in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):  # config last-but-one, card last
                os.replace(tmp / fname, out / fname)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    """The config.json dict of a model directory, with clear errors for missing/invalid files."""
    d = Path(path)
    if d.is_file() and d.name == CONFIG_NAME:
        d = d.parent
    if not d.exists():
        raise FileNotFoundError(f"{d}: no such model directory")
    if not d.is_dir():
        raise ValueError(f"{d}: a model is a directory with {CONFIG_NAME} and {WEIGHTS_NAME}, not a file")
    cfg_path = d / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{d}: missing {CONFIG_NAME} (not an fmct model directory)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    return cfg


def load_model(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> BackboneModel | ClassifierModel:
    """Load a model directory written by :func:`save_pretrained` (safetensors only), in eval mode, on
    ``map_location`` (``"cpu"``, ``"auto"``, ``"cuda"``, ``"cuda:N"``: :func:`fmct.device.resolve_device`).

    ``path`` is a directory or a Hugging Face Hub repo id ``owner/name`` naming no local path: its
    config.json, model.safetensors and README.md are downloaded into the Hub cache (reused offline); the
    keywords after ``map_location`` go to ``huggingface_hub.snapshot_download``.

    Raises:
        FileNotFoundError: the directory, config.json or model.safetensors is missing;
            :class:`fmct.models.hf_hub.ModelUnavailable` (a FileNotFoundError) when a repo id cannot be
            downloaded (offline, no network, no such repository), in one sentence.
        ValueError: pickle weights only (refused), invalid config, or weights not matching the config.
        fmct.device.DeviceUnavailable: a GPU asked for that this machine does not have.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from fmct.models.hf_hub import download_model, is_repo_id

    if is_repo_id(path):
        path = download_model(
            str(path),
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
        )
    d = Path(path)
    if d.is_file() and d.name in (CONFIG_NAME, WEIGHTS_NAME):
        d = d.parent
    if d.is_dir() and not (d / WEIGHTS_NAME).is_file():
        pickles = sorted(p.name for p in d.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(
                f"{d}: has {', '.join(pickles)} but no {WEIGHTS_NAME}; pickle payloads are refused "
                "(they can run code when loaded). Convert the weights to safetensors with a trusted tool."
            )
    config = read_config(d)
    weights = d / str(config.get("weights", WEIGHTS_NAME))
    if weights.suffix != ".safetensors":
        raise ValueError(f"{d}: weights file {weights.name} is not safetensors; pickle payloads are refused")
    if not weights.is_file():
        raise FileNotFoundError(f"{d}: missing {weights.name}")
    expected = config.get("weights_sha256")
    if expected and file_sha256(weights) != expected:
        raise ValueError(f"{weights}: checksum does not match config.json (file corrupted or replaced)")
    device = resolve_device(map_location)
    model = _build(config)
    try:
        sd = load_file(str(weights), device="cpu")  # into the CPU-built model, then moved once
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights}: unreadable safetensors file ({e})") from None
    _load_strict(model, sd, str(d))
    return model.to(device).eval()
