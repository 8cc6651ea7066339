"""Gradient oracles, one module each, registered by the name used in problem files and on the CLI.

| name        | module          | estimate | rollouts, backward passes per call |
|-------------|-----------------|----------|------------------------------------|
| exact       | exact.py        | grad f(U), plain autodiff of the noise-free objective | 1, 1 |
| fd          | fd.py           | central finite differences of the noise-free objective | 2d, 0 |
| cfd         | cfd.py          | straight-through: the true MJX rollout, the gradient of a model whose contacts act from a distance (MJX systems only) | 1, 1 |
| fobg        | fobg.py         | first-order batched gradient (pathwise) | N, N |
| zobg        | zobg.py         | zeroth-order batched gradient (score function, zero-noise baseline; two-sided and antithetic variants) | N + 1 (two-sided 2N, antithetic N), 0 |
| aobg        | aobg.py         | alpha-order: bias-constrained inverse-variance mix of FoBG and ZoBG | 2N + 1, N |
| ivw         | ivw.py          | inverse-variance mix of FoBG and ZoBG, no bias constraint | 2N + 1, N |
| ddcg        | ddcg.py         | IVW where the FoBG passes a local-quadratic test, else ZoBG (2026 follow-up) | 2N + 1, N |
| stepwise    | stepwise.py     | inverse-variance mix per coordinate (time step, control dimension) | 2N + 1, N |
| fixed_alpha | fixed_alpha.py  | a fixed mix of FoBG and ZoBG | 2N + 1, N |

d = T * m. The counts include f(U), the ``value`` every oracle reports, exactly where the estimate uses it
(``value_in_calls``: exact; zobg one-sided, its baseline; the mixing oracles, their ZoBG batch's baseline under
every split); fd, fobg and the two-sided or antithetic zobg evaluate it for the record only, uncounted. The
mixing oracles (aobg, ivw, ddcg, stepwise, fixed_alpha) take ``split``: "independent" (the
counts above), "halves" (N + 1 rollouts, N/2 backward passes: one FoBG's budget) or "shared" (N + 1, N);
see `trajopt.oracles._samples.SPLITS`. ``[oracle] split = "halves"`` sets it for all of them at once.

Oracle classes are frozen dataclasses; their fields are the keys allowed in ``[oracle.<name>]``. Each class
also says what it is, for the figures and studies that loop over the registry: ``colour`` (its colour in every
figure; the paper's: FoBG red, ZoBG blue, AoBG green) and ``chooses_alpha`` (it mixes FoBG and ZoBG with an α
of its own rule, which ``diagnose`` and ``sweep`` report).
"""

from trajopt.oracles.aobg import AoBG
from trajopt.oracles.base import INFO_FIELDS, Oracle, OracleInfo
from trajopt.oracles.cfd import CFD
from trajopt.oracles.ddcg import DDCG
from trajopt.oracles.exact import Exact
from trajopt.oracles.fd import FD
from trajopt.oracles.fixed_alpha import FixedAlpha
from trajopt.oracles.fobg import FoBG
from trajopt.oracles.ivw import IVW
from trajopt.oracles.stepwise import Stepwise
from trajopt.oracles.zobg import ZoBG
from trajopt.registry import Registry, oracle_contract

ORACLES: Registry[type] = Registry("oracle", check=oracle_contract)
for _cls in (Exact, FoBG, ZoBG, AoBG, FixedAlpha, IVW, DDCG, Stepwise, FD, CFD):
    ORACLES.register(_cls.name, _cls)



def alpha_choosers() -> list[str]:
    """The registered oracles that choose their own α (aobg, ivw, ddcg, stepwise)."""
    return [n for n in ORACLES if getattr(ORACLES.get(n), "chooses_alpha", False)]


__all__ = ["alpha_choosers", "ORACLES", "Oracle", "OracleInfo", "INFO_FIELDS", "Exact", "FoBG", "ZoBG", "AoBG", "FixedAlpha", "IVW",
           "DDCG", "Stepwise", "FD", "CFD"]
