"""The step costs kept per system and host (`trajopt.step_costs`): a kept ratio is reused only when it was measured
by the same measuring method (`trajopt.compute.MEASUREMENT`); one from another version (version 1 read a cheap step's
backward pass as free on a busy host: rho_b = 0.0) is measured again, and the new measurement replaces it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trajopt import compute, spec as spec_mod
from trajopt.compute import StepCosts
from trajopt.step_costs import host, step_costs_for, system_identity

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJOPT_CACHE", "1")
    monkeypatch.setenv("TRAJOPT_CACHE_DIR", str(tmp_path / "jax"))
    monkeypatch.delenv("TRAJOPT_STEP_COSTS", raising=False)
    spec = spec_mod.load(ROOT / "problems" / "pushing_stiff.toml")
    return spec, tmp_path / "step_costs.json"


def _key(spec, **extra):
    return json.dumps({**system_identity(spec), "host": host(), **extra}, sort_keys=True, default=str)


def _plant(path, key, costs):
    path.write_text(json.dumps({key: costs.as_dict()}))


def test_a_ratio_kept_by_this_measuring_method_is_reused(cached, monkeypatch):
    spec, path = cached
    kept = StepCosts(4.25, 9.5, "kept")
    _plant(path, _key(spec, measurement=compute.MEASUREMENT), kept)
    monkeypatch.setattr(compute, "measure_step_costs", lambda *a, **k: pytest.fail("measured although kept"))
    assert step_costs_for(spec, None) == kept


@pytest.mark.parametrize("extra", [{}, {"measurement": compute.MEASUREMENT - 1}], ids=["unversioned", "older"])
def test_a_ratio_kept_by_another_measuring_method_is_measured_again(cached, monkeypatch, extra):
    spec, path = cached
    _plant(path, _key(spec, **extra), StepCosts(0.0, 4.164, "measured by an older method"))
    fresh = StepCosts(6.5, 20.0, "measured now")
    monkeypatch.setattr(compute, "measure_step_costs", lambda *a, **k: fresh)
    got = step_costs_for(spec, None)
    assert (got.backward, got.linearization) == (6.5, 20.0)
    kept = json.loads(path.read_text())
    assert kept[_key(spec, measurement=compute.MEASUREMENT)]["backward"] == 6.5  # kept for next time


def test_a_map_that_refuses_forward_mode_has_no_linearisation_to_measure():
    """An MJX step's derivative is a custom VJP: jax.jacfwd refuses it (so does iLQR), and measuring its step costs
    crashed on the linearisation. Its backward pass is measured, ρ_l is 0 and the source says why."""
    import jax

    from trajopt.compute import measure_step_costs

    @jax.custom_vjp
    def step(x, u):
        return 0.9 * x + u

    step.defvjp(lambda x, u: (step(x, u), None), lambda _, g: (0.9 * g, g))
    costs = measure_step_costs(step, 2, 2, batch=2, length=4, rounds=1, repeats=2, max_reps=64)
    assert costs.linearization == 0.0 and costs.backward >= 0.0
    assert "refuses forward-mode derivatives" in costs.source
    plain = measure_step_costs(lambda x, u: 0.9 * x + u, 2, 2, batch=2, length=4, rounds=1, repeats=2, max_reps=64)
    assert "refuses" not in plain.source
