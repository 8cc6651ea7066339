"""Each oracle charged what its backward pass costs (issue #29): an oracle whose backward pass differentiates another
map than the system's step (`cfd`) declares it (``backward_step(system)``), `trajopt.compute.measure_step_costs`
times it in the same rounds as ρ_b, `StepCosts.oracles` carries its ratio, and every conversion of a method's counts
charges it: the budget rule, `Result.forward_equivalents`, a closed loop's FSE per replan, the figures' axis.

A stand-in oracle (`Costly`: exact's estimate, with a declared backward map that does the step's work many times)
plays `cfd` here, so nothing needs MuJoCo; the one MJX test (`-m mjx`) measures `cfd` on MJX pushing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt import compute, spec as spec_mod
from trajopt.compute import (StepCosts, budget_iterations, declared_backward_steps, given_step_costs, method_oracle,
                             step_equivalents)
from trajopt.methods import GradientMethod, MultiStart
from trajopt.methods.ilqr import ILQR
from trajopt.oracles import Exact, ZoBG
from trajopt.optim import SGD
from trajopt.problem import QuadraticCost, trajectory_problem
from trajopt.solver import solve

ROOT = Path(__file__).resolve().parents[1]
KEY = jax.random.PRNGKey(3)
T = 5
COSTS = StepCosts(backward=1.0, linearization=3.0, source="given", oracles=(("costly", 2.0),))


def step(x, u):
    return jnp.array([x[0] + 0.1 * x[1], x[1] + 0.1 * (u[0] - jnp.sin(x[0]))])


def heavy_step(x, u):
    """The same map as `step`, computed 60 times over (each from x + 0 x the last result, so none is hoisted out of
    the loop): a backward pass through it does far more work than through `step`."""
    def body(_, last):
        return step(x + 0.0 * last, u)
    return jax.lax.fori_loop(0, 60, body, jnp.zeros_like(x))


class Costly(Exact):
    """exact's estimate, declaring a backward map of its own (as `cfd` does on an MJX system)."""

    name: ClassVar[str] = "costly"

    def backward_step(self, system):
        from trajopt.systems.mjx_contact import straight_through

        return straight_through(step, heavy_step)


PROBLEM = trajectory_problem("pendulum", step, jnp.zeros(2), QuadraticCost(Q=jnp.eye(2), R=0.1 * jnp.eye(1),
                                                                           Qf=jnp.eye(2), goal=jnp.array([1.0, 0.0])),
                             jnp.full((T, 1), 0.1))
COSTLY = GradientMethod(Costly(), SGD(1e-2))
EXACT = GradientMethod(Exact(), SGD(1e-2))


def test_the_oracle_is_charged_its_own_ratio_in_a_budget_at_the_exact_boundary():
    # rho_b = 1, rho_costly = 2: one step of each spends one rollout and one backward pass of T steps
    assert step_equivalents(COSTLY, PROBLEM, COSTS) == T * (1 + 2.0)
    assert step_equivalents(EXACT, PROBLEM, COSTS) == T * (1 + 1.0)
    B = T * 3 * 7  # exactly 7 of costly's steps, 10.5 of exact's
    assert budget_iterations(COSTLY, PROBLEM, B, COSTS) == 7
    assert budget_iterations(COSTLY, PROBLEM, B - 1e-9, COSTS) == 6
    assert budget_iterations(EXACT, PROBLEM, B, COSTS) == math.floor(B / (T * 2)) == 10
    # MultiStart over it runs costly's backward passes (2 starts: twice the counts), a sampler without an oracle
    # and ZoBG (no backward pass) are as before
    assert step_equivalents(MultiStart(COSTLY, starts=2, start_spread=0.1), PROBLEM, COSTS) == 2 * T * 3
    assert step_equivalents(GradientMethod(ZoBG(samples=3, sigma=0.1), SGD(1e-2)), PROBLEM, COSTS) == T * 4
    assert method_oracle(MultiStart(COSTLY, starts=2, start_spread=0.1)) == "costly"
    assert method_oracle(ILQR()) is None


def test_a_budget_run_stops_where_the_oracles_ratio_says_and_its_result_converts_with_it():
    B = T * 3 * 7
    r = solve(PROBLEM, COSTLY, key=KEY, iterations=12, seeds=[0], budget=B, step_costs=COSTS)
    assert r.stopped == ["budget"] and r.stopped_at[0] == 7  # charged rho_b it would run 10 steps (10 T 2 <= B)
    assert r.seed_forward_equivalents()[0] == B  # 7 steps of T (1 + 2): the budget exactly
    np.testing.assert_array_equal(r.forward_equivalents()[:8], T * 3.0 * np.arange(8))
    # the same counts of exact's method convert with rho_b
    e = solve(PROBLEM, EXACT, key=KEY, iterations=3, seeds=[0], step_costs=COSTS)
    np.testing.assert_array_equal(e.forward_equivalents(), T * 2.0 * np.arange(4))


def test_a_closed_loop_replan_is_charged_its_planners_oracle():
    from trajopt.runs_mpc import forward_equivalents_of

    H = 4
    counts = dict(rollouts=np.array([[3, 1]]), gradients=np.array([[3, 1]]), linearizations=np.zeros((1, 2)))
    for method, rho in ((COSTLY, 2.0), (MultiStart(COSTLY, starts=2, start_spread=0.1), 2.0), (EXACT, 1.0)):
        r = SimpleNamespace(settings=SimpleNamespace(horizon=H), method=method, **counts)
        np.testing.assert_array_equal(forward_equivalents_of(r, COSTS), H * (np.array([[3, 1]]) * (1 + rho)))


def test_the_compute_axis_states_the_oracles_ratio():
    from trajopt.plots import x_label

    r = solve(PROBLEM, COSTLY, key=KEY, iterations=2, seeds=[0], step_costs=COSTS)
    assert "ρ_costly = 2" in x_label("compute", {"costly": r})


def test_step_costs_round_trip_and_an_old_dict_without_oracles_still_reads():
    c = StepCosts(1.5, 0.0, "measured", (("zeta", 3.0), ("alpha", 2.5)))
    assert c.oracles == (("alpha", 2.5), ("zeta", 3.0))  # one order, whatever order given
    assert c.as_dict() == {"backward": 1.5, "linearization": 0.0, "source": "measured",
                           "oracles": {"alpha": 2.5, "zeta": 3.0}}
    assert StepCosts.from_dict(json.loads(json.dumps(c.as_dict()))) == c
    old = StepCosts.from_dict({"backward": 4.0, "linearization": 2.0, "source": "kept in 2025"})
    assert old.oracles == () and old.backward_of("cfd") == 4.0 and "oracles" not in old.as_dict()
    assert c.backward_of("zeta") == 3.0 and c.backward_of("exact") == 1.5 and c.backward_of(None) == 1.5
    for bad in ((("cfd", -1.0),), (("cfd", math.nan),), (("cfd", 1.0), ("cfd", 2.0)), (("", 1.0),), ("cfd",)):
        with pytest.raises(ValueError, match="StepCosts.oracles"):
            StepCosts(1.0, 1.0, oracles=bad)


def test_trajopt_step_costs_gives_an_oracles_ratio(monkeypatch):
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "24.3,24.3,cfd=27.7")
    assert given_step_costs() == StepCosts(24.3, 24.3, "given by TRAJOPT_STEP_COSTS", (("cfd", 27.7),))
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", " 1 , 2 ")
    assert given_step_costs() == StepCosts(1.0, 2.0, "given by TRAJOPT_STEP_COSTS")
    for bad in ("1,2,cfd", "1,2,3", "1,2,cfd=-1", "1,2,cfd=x", "1,2,cfd=1,cfd=2", "1,2,=3", "1,2,c d=3", "1,cfd=2"):
        monkeypatch.setenv("TRAJOPT_STEP_COSTS", bad)
        with pytest.raises(ValueError, match=r"TRAJOPT_STEP_COSTS: found .*allowed: .*'B,L,cfd=X'"):
            given_step_costs()


def test_only_an_oracle_that_declares_a_map_on_the_system_is_measured():
    from trajopt.oracles.cfd import CFD

    system = spec_mod.load(ROOT / "problems" / "pushing_stiff.toml").system  # not MJX: cfd declares nothing there
    got = declared_backward_steps(system, [Exact(), ZoBG(samples=2, sigma=0.1), CFD(), Costly()])
    assert list(got) == ["costly"]


def test_the_measurement_times_a_declared_map_in_the_same_rounds():
    c = compute.measure_step_costs(step, 2, 1, batch=8, length=32, rounds=3, repeats=3, max_reps=16,
                                   backward_steps={"costly": Costly().backward_step(None)})
    assert dict(c.oracles).keys() == {"costly"} and "costly's own backward pass in the same rounds" in c.source
    # its backward pass runs the step 60 times (measured about 100 forward steps, the plain VJP under 1): however
    # loaded the host, ten forward steps more than the plain one (timing the plain VJP twice gives about 0 more)
    assert c.backward_of("costly") > c.backward + 10


def test_a_declared_map_is_measured_beside_a_step_that_refuses_forward_mode():
    """The MJX case: the step has no linearisation to time (a custom VJP refuses forward mode) and an oracle declares
    its own backward map (cfd). The programs timed are then the forward, the backward and the oracle's, and the
    oracle's ratio is its own, not dropped and not read from another program's times."""
    @jax.custom_vjp
    def vjp_only(x, u):
        return step(x, u)

    vjp_only.defvjp(lambda x, u: (step(x, u), (x, u)), lambda res, g: jax.vjp(step, *res)[1](g))
    c = compute.measure_step_costs(vjp_only, 2, 1, batch=8, length=32, rounds=3, repeats=3, max_reps=16,
                                   backward_steps={"costly": Costly().backward_step(None)})
    assert c.linearization == 0.0 and "refuses forward-mode" in c.source
    assert dict(c.oracles).keys() == {"costly"}
    assert c.backward_of("costly") > c.backward + 10  # its backward pass runs the step 60 times


@pytest.fixture
def cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJOPT_CACHE", "1")
    monkeypatch.setenv("TRAJOPT_CACHE_DIR", str(tmp_path / "jax"))
    monkeypatch.delenv("TRAJOPT_STEP_COSTS", raising=False)
    return spec_mod.load(ROOT / "problems" / "pushing_stiff.toml"), tmp_path / "step_costs.json"


def test_a_run_without_a_declaring_oracle_measures_nothing_more(cached, monkeypatch):
    from trajopt.step_costs import step_costs_for

    spec, _ = cached
    seen = []
    monkeypatch.setattr(compute, "measure_step_costs",
                        lambda *a, **k: seen.append(k.get("backward_steps")) or StepCosts(2.0, 3.0, "now"))
    assert step_costs_for(spec, None).oracles == ()
    assert seen == [{}]


def test_a_kept_entry_without_an_oracles_ratio_gains_it_scaled_to_the_kept_rho_b(cached, monkeypatch):
    from trajopt.step_costs import host, step_costs_for, system_identity

    spec, path = cached
    key = json.dumps({**system_identity(spec), "host": host(), "measurement": compute.MEASUREMENT}, sort_keys=True,
                     default=str)
    path.write_text(json.dumps({key: StepCosts(4.0, 6.0, "kept").as_dict()}))
    # measured now on a busier host: rho_b 8 (not the kept 4), costly 12 in the same rounds (1.5 x rho_b)
    monkeypatch.setattr(compute, "measure_step_costs", lambda *a, **k: StepCosts(8.0, 9.0, "now", (("costly", 12.0),)))
    got = step_costs_for(spec, None, oracles=[Costly()])
    assert (got.backward, got.linearization, got.oracles) == (4.0, 6.0, (("costly", 6.0),))  # the kept ones stay
    assert "costly's ratio measured later" in got.source
    assert StepCosts.from_dict(json.loads(path.read_text())[key]) == got  # kept for the next run
    monkeypatch.setattr(compute, "measure_step_costs", lambda *a, **k: pytest.fail("measured although kept"))
    assert step_costs_for(spec, None, oracles=[Costly()]) == got


def test_a_study_measures_each_system_once_for_the_oracles_of_all_its_cells():
    from trajopt.studies.runner import with_step_costs

    spec = spec_mod.load(ROOT / "problems" / "pushing_stiff.toml")
    specs = {i: SimpleNamespace(system=spec.system, resolved=spec.resolved, closed_loop_problem=lambda: None,
                                variants={"v": SimpleNamespace(method=m)})
             for i, m in enumerate((EXACT, COSTLY))}
    seen = []

    def measure(spec, problem, oracles=()):
        seen.append([o.name for o in oracles])
        return StepCosts(1.0, 1.0, "now", (("costly", 2.0),))

    @dataclasses.dataclass(frozen=True)
    class Cell:  # what with_step_costs reads of a cell
        index: int
        error: object = None
        problem: str = "p"
        step_costs: object = None

    out, _ = with_step_costs(SimpleNamespace(specs=specs), [Cell(i) for i in specs], [], measure)
    assert seen == [["exact", "costly"]]  # one measurement, every cell's oracle
    assert [StepCosts.from_dict(c.step_costs).backward_of("costly") for c in out] == [2.0, 2.0]


@pytest.mark.mjx
def test_cfd_on_mjx_pushing_is_measured_dearer_than_the_plain_backward_pass():
    """`cfd`'s backward pass runs the contacts-from-distance step (one more kinematics and collision pass per
    physics substep) and differentiates it: measured in the same interleaved rounds as exact's, 1.13 x on stiff
    pushing and 1.34 x on the finger (benchmarks/contact_gradients_step_costs.txt). Only the direction is asserted:
    interleaving keeps the relation under load, but a 13 % margin is within what one noisy round can move."""
    pytest.importorskip("mujoco.mjx", reason="the mjx system needs the [mjx] extra")
    from trajopt.compute import system_step
    from trajopt.oracles.cfd import CFD

    system = spec_mod.load(ROOT / "problems" / "mjx_push_stiff.toml").system
    own = declared_backward_steps(system, [CFD()])
    assert list(own) == ["cfd"]
    c = compute.measure_step_costs(*system_step(system), batch=4, length=16, max_reps=1, rounds=3, repeats=3,
                                   backward_steps=own)
    assert c.backward_of("cfd") > c.backward > 0


def test_compare_records_and_reads_back_the_oracles_charge(tmp_path, monkeypatch):
    """`trajopt compare --budget` with the stand-in oracle (a user oracle, ``module:attribute``): its iterations,
    result.json's forward-step equivalents and the folder read back are charged its ratio; exact's ρ_b."""
    from typer.testing import CliRunner

    from trajopt import runs
    from trajopt.cli import app

    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "1,3,costly=2")
    problem = tmp_path / "p.toml"
    problem.write_text("""title = "tiny"
[system]
name = "pushing"
stiffness = 10.0
[task]
horizon = 5
x0 = [0.0, 1.0, 0.0, 0.0]
goal = [1.0, 2.0, 0.0, 0.0]
Q = [0.1, 10.0, 0.1, 0.1]
R = [1.0]
u_init = 0.1
[solve]
iterations = 4
seeds = 1
variants = ["costly", "exact"]
[variants.costly]
oracle = "tests.test_oracle_step_costs:Costly"
""")
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["compare", str(problem), "--budget", "100", "--out", str(out), "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads((out / "result.json").read_text())
    assert result["step_costs"]["oracles"] == {"costly": 2.0}
    costly, exact = result["variants"]["costly"], result["variants"]["exact"]
    assert costly["iterations"] == 100 // (5 * 3) == 6 and costly["forward_equivalents"] == 6 * 15
    assert exact["iterations"] == 100 // (5 * 2) == 10 and exact["forward_equivalents"] == 10 * 10
    assert costly["charged_oracle"] == "costly" and "charged_oracle" not in exact
    back = runs.read_run(out).results
    assert back["costly"].forward_equivalents()[-1] == 90 and back["exact"].forward_equivalents()[-1] == 100
