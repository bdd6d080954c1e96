"""Configs: YAML files plus ``key.sub=value`` dot-list overrides, as plain nested dicts."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


def parse_value(text: str) -> Any:
    """Parse an override value with YAML rules (``3`` → int, ``1e-3`` → float, ``[1,2]`` → list)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads "5e-4" as a string; users mean a number
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with ``a.b.c=value`` overrides applied.

    Raises:
        ValueError: on an override without ``=``, on a key that the config does not have
            (a typo should fail loudly, not be silently ignored), or on a value of the wrong kind for the
            key's current one (``max_steps=abc``: a number expected; ``key=1`` for a true/false key).
    """
    out = copy.deepcopy(dict(cfg))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"unknown config key {key!r} (no section {p!r})")
            node = node[p]
        if parts[-1] not in node:
            raise ValueError(f"unknown config key {key!r}; known here: {sorted(node)}")
        node[parts[-1]] = _checked(key, node[parts[-1]], parse_value(value))
    return out


def _checked(key: str, current: Any, new: Any) -> Any:
    """``new`` if it is of the kind ``current`` is: numbers stay numbers or lists of numbers (a whole float
    for an integer key becomes an int), booleans stay booleans; ``null`` is always accepted; keys whose current
    value is None, a string or a collection take any value."""
    if new is None:  # key=null switches an option off (layerscale_init=null, schedule_steps=null)
        return None
    if isinstance(current, bool):
        if not isinstance(new, bool):
            raise ValueError(f"config key {key!r} is true/false, got {new!r}")
    elif isinstance(current, int | float) and not _numbers(new):
        raise ValueError(f"config key {key!r} needs a number (or a list of numbers), got {new!r}")
    elif isinstance(current, int) and isinstance(new, float) and new.is_integer():
        return int(new)  # max_steps=1e3 is a step count, not 1000.0
    return new


def _numbers(value: Any) -> bool:
    """A number, or a list of numbers (``model.patch_size=[8,8,4]``: anisotropic); booleans are not."""
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in items)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values of ``update`` win; nested dicts merge."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(
    path: str | Path | None, overrides: Iterable[str] = (), defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Load ``defaults`` ← YAML file ← overrides."""
    cfg: dict[str, Any] = copy.deepcopy(dict(defaults or {}))
    if path is not None:
        cfg = merge(cfg, read_yaml(path))
    return apply_overrides(cfg, overrides)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (an empty file: ``{}``); ``ValueError`` when it holds another kind."""
    with open(path) as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a config file must hold a mapping at the top level")
    return loaded


def save_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
