"""Per-step schedules: pure functions of the step, so resuming needs only the step number.

- lr and weight decay: linear warm-up then cosine (``cosine_with_warmup``),
- teacher temperature: linear warm-up then constant (``linear_warmup``),
- EMA momentum: cosine from ``start`` to ``end`` (``cosine_with_warmup`` with no warm-up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


def cosine_with_warmup(
    step: int, total: int, base: float, final: float, warmup: int = 0, warmup_start: float = 0.0
) -> float:
    """Linear ``warmup_start -> base`` over ``warmup`` steps, then cosine ``base -> final`` until ``total``.

    Steps at or after ``total`` return ``final``.
    """
    if warmup > 0 and step < warmup:
        return warmup_start + (base - warmup_start) * step / warmup
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0) / span, 1.0)
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * t))


def linear_warmup(step: int, start: float, end: float, warmup: int) -> float:
    """Linear ``start -> end`` over ``warmup`` steps, then ``end``."""
    if warmup <= 0 or step >= warmup:
        return end
    return start + (end - start) * step / warmup


@dataclass
class SSLSchedules:
    """All schedules of a pretraining run, evaluated at a step (``values(step)``). Every field but
    ``total_steps`` is a key of the config's ``optim`` section, with its default written here only
    (``fmct.train.config.DEFAULTS`` takes it from :meth:`section_defaults`)."""

    total_steps: int
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int = 10  # of the learning rate
    weight_decay: float = 0.04
    weight_decay_end: float = 0.2
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 30
    momentum_teacher: float = 0.992
    momentum_teacher_end: float = 1.0
    freeze_last_layer_steps: int = 0

    def values(self, step: int) -> dict[str, Any]:
        """``{"lr", "wd", "teacher_temp", "momentum", "freeze_last_layer"}`` at ``step`` (0-based)."""
        return {
            "lr": cosine_with_warmup(step, self.total_steps, self.lr, self.min_lr, self.warmup_steps),
            "wd": cosine_with_warmup(step, self.total_steps, self.weight_decay, self.weight_decay_end),
            "teacher_temp": linear_warmup(
                step, self.warmup_teacher_temp, self.teacher_temp, self.warmup_teacher_temp_steps
            ),
            "momentum": cosine_with_warmup(
                step, self.total_steps, self.momentum_teacher, self.momentum_teacher_end
            ),
            "freeze_last_layer": step < self.freeze_last_layer_steps,
        }

    @classmethod
    def section_defaults(cls) -> dict[str, Any]:
        """The defaults of these fields in the config's ``optim`` section."""
        return {f.name: f.default for f in fields(cls) if f.name != "total_steps"}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SSLSchedules:
        """The schedules of a resolved pretraining config: its ``optim`` keys, over ``schedule_steps`` (or
        ``max_steps`` when that is null)."""
        optim = cfg["optim"]
        total = int(cfg["schedule_steps"] or cfg["max_steps"])
        return cls(total_steps=total, **{name: optim[name] for name in cls.section_defaults()})
