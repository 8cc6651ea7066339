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


def test_the_status_around_a_measurement_is_shown_only_while_one_runs(cached, monkeypatch):
    """``measuring`` (the CLI's "measuring the step costs ..." line on a terminal) is entered around the measurement
    alone: not when the ratios are kept from an earlier run, nor when TRAJOPT_STEP_COSTS gives them, where it would
    say that something is measured that is not. Counted independently: the measurement's calls inside and outside."""
    import contextlib

    spec, _ = cached
    inside, calls = [], []

    @contextlib.contextmanager
    def status():
        inside.append(True)
        yield
        inside.append(False)

    def measure(*a, **k):
        calls.append(bool(inside) and inside[-1])
        return StepCosts(2.0, 3.0, "measured now")

    monkeypatch.setattr(compute, "measure_step_costs", measure)
    assert step_costs_for(spec, None, measuring=status()).backward == 2.0
    assert calls == [True] and inside == [True, False]
    step_costs_for(spec, None, measuring=status())  # kept now: nothing measured, no status
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "1,1")
    step_costs_for(spec, None, measuring=status())
    assert calls == [True] and inside == [True, False]


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


def test_another_process_keeping_ratios_meanwhile_is_not_overwritten(cached, monkeypatch):
    """Two processes measuring at once (two runs, a study's workers, pytest's workers): while this one measures, the
    other keeps another system's ratios and this system's own. Neither is dropped, and this process converts with the
    first kept for its system, as every later run will (it used to write the file it read before measuring: the other
    process's entries were lost, and a run of the same system after it measured again and converted differently)."""
    spec, path = cached
    key = _key(spec, measurement=compute.MEASUREMENT)
    first = StepCosts(3.5, 7.0, "kept by the other process")

    def measure_while_another_keeps(*a, **k):
        path.write_text(json.dumps({"another system": StepCosts(1.0, 2.0, "x").as_dict(), key: first.as_dict()}))
        return StepCosts(9.0, 9.0, "measured here, second")

    monkeypatch.setattr(compute, "measure_step_costs", measure_while_another_keeps)
    assert step_costs_for(spec, None) == first
    kept = json.loads(path.read_text())
    assert set(kept) == {"another system", key} and kept[key]["backward"] == 3.5


@pytest.mark.slow
def test_processes_keeping_systems_at_once_keep_every_one(tmp_path):
    """The lock, across real processes: 6 processes started together each keep one of 6 systems' ratios (a
    measurement stubbed to take 2 s, longer than their imports differ, so that they overlap); every entry is in the
    file afterwards."""
    import subprocess
    import sys

    child = (
        "import sys, time, json\n"
        "from trajopt import compute, spec as spec_mod\n"
        "from trajopt.step_costs import step_costs_for\n"
        "compute.measure_step_costs = lambda *a, **k: (time.sleep(2.0), compute.StepCosts(float(sys.argv[2]), 1.0, 's'))[1]\n"
        f"spec = spec_mod.load({str(ROOT / 'problems' / 'pushing_stiff.toml')!r}, ['system.stiffness=' + sys.argv[2]])\n"
        "print(step_costs_for(spec, None).backward)\n")
    env = {**__import__("os").environ, "TRAJOPT_CACHE": "1", "TRAJOPT_CACHE_DIR": str(tmp_path / "jax")}
    env.pop("TRAJOPT_STEP_COSTS", None)
    procs = [subprocess.Popen([sys.executable, "-c", child, "x", str(100.0 + i)], env=env, stdout=subprocess.PIPE,
                              text=True) for i in range(6)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    kept = json.loads((tmp_path / "step_costs.json").read_text())
    assert sorted(v["backward"] for v in kept.values()) == [100.0 + i for i in range(6)]


def test_a_cheap_one_step_cost_is_timed_at_the_full_size(cached):
    """A one-step system's cost is measured as any step is: a cheap one (the ball's, microseconds) on 16 rollouts of
    64 evaluations, its repetitions calibrated to 5 ms. Timed on 2 evaluations instead (a special case for one-step
    systems, tried and reverted), the loop's own overhead hid its backward pass: rho_b 0.06, where this size gives
    1.7-3.0 on the same host. Only an expensive step is timed on fewer (the test below)."""
    spec = spec_mod.load(ROOT / "problems" / "ball_with_wall.toml")
    costs = step_costs_for(spec, None)
    assert costs.source.startswith("measured: 16 rollouts x 64 steps"), costs.source
    # and on every repetition asked: a pass of its programs takes milliseconds, far inside the timing budget
    assert "each the fastest of 7" in costs.source and "asked" not in costs.source, costs.source


def test_an_expensive_step_is_timed_on_fewer_steps():
    """A step that costs milliseconds (a large model: the Shadow hand's control step is about 17 ms on a 2-core CPU;
    the cube toss's one step, its whole 1 s flight) is timed on fewer steps than 16 rollouts of 64, so that one
    forward run takes about ``max_forward_seconds`` (here 0.1 s, with a step of at least 0.5 ms: about 200 steps),
    not hours over all the programs and rounds.
    Counted independently: a host callback in the step, which is what makes it slow (its sleep is a floor, so the
    first run at the full size is always over the bound, however loaded the host)."""
    import re
    import time

    import jax

    calls = []

    def seen(x):
        calls.append(1)
        time.sleep(5e-4)

    def step(x, u):
        jax.debug.callback(seen, x)
        return 0.9 * x + u

    costs = compute.measure_step_costs(step, 2, 2, repeats=1, rounds=1, max_forward_seconds=0.1)
    batch, length = map(int, re.match(r"measured: (\d+) rollouts x (\d+) steps", costs.source).groups())
    assert 2 <= batch * length <= 300, costs.source
    # two forward runs at the full size (compiling, then timed), then about 16 runs of the programs on the smaller
    # one (without the resize they run 1,024 steps each: over 16,000 calls)
    assert len(calls) < 2 * 1024 + 20 * 300


def test_a_step_whose_programs_take_long_is_timed_on_fewer_runs_and_only_the_programs_it_needs():
    """An MJX step on a large model (gymnasium's hopper: one backward run of the measurement's 16 rollouts takes 5-7 s
    on a 2-core CPU) was timed 7 x 3 times per program, with a third program that repeated the forward one in place of
    the linearisation it cannot have: over two minutes of timing alone. The rounds are held to about
    ``max_timing_seconds`` (here one run of each), and a map that refuses forward mode runs two programs, not three.
    Counted independently: a host callback in the step (its sleep a floor on every run, so the budget binds however
    loaded the host). Each program runs once to compile, once in the pass that sizes the rounds, then once in each of
    3 rounds; the forward one 5 times more (the first run, its size check, 3 calibration runs) -- 15 runs of 8 steps.
    The budget ignored gives 51 runs; the third program, 20."""
    import time

    import jax

    calls = []

    def seen(x):
        calls.append(1)
        time.sleep(2e-3)

    @jax.custom_vjp
    def step(x, u):
        jax.debug.callback(seen, x)
        return 0.9 * x + u

    step.defvjp(lambda x, u: (step(x, u), None), lambda _, g: (0.9 * g, g))
    costs = compute.measure_step_costs(step, 2, 2, batch=2, length=4, rounds=3, repeats=7, max_timing_seconds=0.05)
    assert "each the fastest of 1 (of 7 asked" in costs.source, costs.source
    assert costs.linearization == 0.0 and costs.backward >= 0.0
    assert len(calls) <= 15 * 8, len(calls)


@pytest.mark.parametrize("first, resized", [(1.5, False), (2.5, True)])
def test_a_step_is_resized_only_when_its_first_run_takes_over_twice_the_bound(monkeypatch, first, resized):
    """A first forward run a little over ``max_forward_seconds`` (gymnasium's hopper: 0.29 s against 0.25) kept
    cutting 16 rollouts to 13 and compiling the programs again, which cost more than the shorter runs saved; only a
    run over twice the bound is resized. The first run's seconds are set (the timing of everything after is real)."""
    real, calls = compute._fastest_seconds, []

    def timed(fns, k):
        calls.append(1)
        return [first * 0.25] if len(calls) == 1 else real(fns, k)

    monkeypatch.setattr(compute, "_fastest_seconds", timed)
    costs = compute.measure_step_costs(lambda x, u: 0.9 * x + u, 2, 2, rounds=1, repeats=1, max_reps=4,
                                       max_forward_seconds=0.25)
    assert costs.source.startswith("measured: 16 rollouts x 64 steps") is not resized, costs.source


def test_an_unbounded_timing_budget_times_every_repetition_asked():
    import math

    costs = compute.measure_step_costs(lambda x, u: 0.9 * x + u, 2, 2, batch=2, length=4, rounds=1, repeats=2,
                                       max_reps=4, max_timing_seconds=math.inf)
    assert "each the fastest of 2" in costs.source and "asked" not in costs.source, costs.source
