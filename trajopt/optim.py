"""Optimisers, built on optax. Each is a frozen dataclass whose fields are the keys allowed in a problem
file's ``[solve.optimizer]`` table, with ``build() -> optax.GradientTransformation``.

* ``sgd``: fixed-step gradient descent, U <- U - step * g (the paper's method, §5.1).
* ``adam``: Adam with learning rate ``step``.

Both take ``clip_norm``: clip the gradient to this global norm before the update (``inf`` = no clipping,
the paper's setting), via ``optax.clip_by_global_norm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import optax

from trajopt import checks
from trajopt.registry import Registry


def _with_clipping(clip_norm: float, inner: optax.GradientTransformation) -> optax.GradientTransformation:
    if math.isinf(clip_norm):
        return inner
    return optax.chain(optax.clip_by_global_norm(clip_norm), inner)


@dataclass(frozen=True)
class SGD:
    """U <- U - step * g."""

    step: float = 1e-3
    clip_norm: float = math.inf
    name: ClassVar[str] = "sgd"

    def __post_init__(self):
        checks.positive("step", self.step)
        checks.positive("clip_norm", self.clip_norm, allow_inf=True)

    def build(self) -> optax.GradientTransformation:
        return _with_clipping(self.clip_norm, optax.sgd(self.step))


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba) with learning rate ``step`` and moment decays b1, b2."""

    step: float = 1e-2
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float = math.inf
    name: ClassVar[str] = "adam"

    def __post_init__(self):
        checks.positive("step", self.step)
        checks.in_interval("b1", self.b1, 0.0, 1.0)
        checks.in_interval("b2", self.b2, 0.0, 1.0)
        checks.positive("eps", self.eps)
        checks.positive("clip_norm", self.clip_norm, allow_inf=True)

    def build(self) -> optax.GradientTransformation:
        return _with_clipping(self.clip_norm, optax.adam(self.step, b1=self.b1, b2=self.b2, eps=self.eps))


OPTIMIZERS: Registry[type] = Registry("optimizer")
OPTIMIZERS.register("sgd", SGD)
OPTIMIZERS.register("adam", Adam)
