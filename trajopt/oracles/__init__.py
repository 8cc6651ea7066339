"""Gradient oracles, one module each, registered by the name used in problem files and on the CLI.

| name        | module          | estimate |
|-------------|-----------------|----------|
| exact       | exact.py        | grad f(U), plain autodiff of the noise-free objective |
| fobg        | fobg.py         | first-order batched gradient (pathwise) |
| zobg        | zobg.py         | zeroth-order batched gradient (score function, zero-noise baseline) |
| aobg        | aobg.py         | alpha-order: bias-constrained inverse-variance mix of FoBG and ZoBG |
| fixed_alpha | fixed_alpha.py  | a fixed mix of FoBG and ZoBG |

Oracle classes are frozen dataclasses; their fields are the keys allowed in ``[oracle.<name>]``.
"""

from trajopt.oracles.aobg import AoBG
from trajopt.oracles.base import INFO_FIELDS, Oracle, OracleInfo
from trajopt.oracles.exact import Exact
from trajopt.oracles.fixed_alpha import FixedAlpha
from trajopt.oracles.fobg import FoBG
from trajopt.oracles.zobg import ZoBG
from trajopt.registry import Registry

ORACLES: Registry[type] = Registry("oracle")
for _cls in (Exact, FoBG, ZoBG, AoBG, FixedAlpha):
    ORACLES.register(_cls.name, _cls)

__all__ = ["ORACLES", "Oracle", "OracleInfo", "INFO_FIELDS", "Exact", "FoBG", "ZoBG", "AoBG", "FixedAlpha"]
