"""An MJX model's physics perturbed for the plant only ([plant.scale] body_mass, dof_damping, geom_friction), and
factors drawn per seed (geom_friction = [0.5, 2.0]): trajopt.closedloop.tables, trajopt.closedloop.plant,
trajopt.systems.mjx.MJX.with_physics / physics_step.

On tests/models/slider.xml (a 1 kg ball on a plane pushed along x by 8 N: friction 0.5, damping 0.5 on x): a
heavier ball, more friction, more damping each leave it behind the model's after 50 steps, and the planner's model
is unchanged. The per-seed draws: reproducible, the same in any batch (default run, no MuJoCo needed); in an
episode (`trajopt mpc`) each seed's plant steps with its own factor, the one result.json records. Refusals: exit 2,
one line naming the file and key, nothing written. Each compiled program is a tiny model's (seconds)."""

from __future__ import annotations

import json
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt.closedloop import Draw, Plant

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLIDER = os.path.join(ROOT, "tests", "models", "slider.xml")
PUSH = 8.0  # N along x: beyond static friction (0.5 x 9.81 N), so the ball slides
STEPS = 50
runner = CliRunner()


# ------------------------------------------------------------------ per-seed factors: no MuJoCo needed


def test_per_seed_factors_are_reproducible_and_independent_of_the_batch():
    plant = Plant(draws=(Draw("geom_friction", None, 0.5, 2.0), Draw("dof_damping", "x", 0.1, 0.1)))
    first = Plant(draws=plant.draws[:1])
    # one program: each seed's factors of both plants (compiled once per batch size)
    draw = jax.jit(lambda key, seeds: jax.vmap(
        lambda s: (plant.factors(jax.random.fold_in(key, s)), first.factors(jax.random.fold_in(key, s))))(seeds))
    key = jax.random.PRNGKey(7)
    batch, alone_first = (np.asarray(a) for a in draw(key, jnp.arange(8)))
    np.testing.assert_array_equal(batch[[5, 2]], np.asarray(draw(key, jnp.asarray([5, 2]))[0]))  # as in any batch
    np.testing.assert_array_equal(batch[5], np.asarray(plant.factors(jax.random.fold_in(key, 5))))  # unbatched
    f = batch[:, 0]
    assert np.all((f >= 0.5) & (f < 2.0)) and len(set(f.tolist())) == 8  # within the range, one per seed
    np.testing.assert_array_equal(batch[:, 1], 0.1)  # a range of one point is that point
    np.testing.assert_array_equal(alone_first[:, 0], f)  # a draw's factor does not depend on the draws after it
    other = np.asarray(draw(jax.random.PRNGKey(8), jnp.arange(8))[0])  # another root key, other factors
    assert not np.any(other[:, 0] == f)


def test_a_draw_on_a_system_without_per_seed_parameters_is_refused():
    from trajopt.checks import FieldError
    from trajopt.systems.pendulum import Pendulum

    with pytest.raises(FieldError, match="a parameter drawn per seed: none for this system"):
        Plant(system=Pendulum(), draws=(Draw("geom_friction", None, 0.5, 2.0),)).check(2, 10)


# ------------------------------------------------------------------ MJX plants



def needs_mjx():
    pytest.importorskip("mujoco.mjx", reason="the mjx system needs the [mjx] extra: pip install -e '.[mjx]'")


def problem_text(scale: str = "", extra: str = "") -> str:
    return textwrap.dedent(f"""
        title = "slider"
        [system]
        name = "mjx"
        model = "{SLIDER}"

        [task]
        horizon = 6
        x0 = [0.0, 0.0, 0.0, 0.0]
        goal = [0.5, 0.0, 0.0, 0.0]
        Q = [1.0, 0.0, 0.0, 0.0]
        R = [0.001]
        Qf = [10.0, 0.0, 1.0, 0.0]
        u_init = {PUSH}

        [solve]
        seeds = 3
        variants = ["ps"]

        [method.ps]
        samples = 4
        sigma = 2.0

        [mpc]
        episode = 6
        horizon = 3
        replan_every = 3
        iterations = 1
        {extra}
        [plant]
        [plant.scale]
        """) + textwrap.dedent(scale)


def write(tmp_path, text: str, name: str = "slider.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(tmp_path, scale: str):
    from trajopt import spec

    return spec.load(write(tmp_path, problem_text(scale)))


def pushed(step, x0, factors=None) -> np.ndarray:
    """The state after STEPS control steps of the constant push (compiled once per step function)."""
    def roll(f):
        def body(x, _):
            return (step(x, jnp.array([PUSH])) if f is None else step(x, jnp.array([PUSH]), f)), None
        return jax.lax.scan(body, x0, None, length=STEPS)[0]

    return np.asarray(jax.jit(roll)(factors))


@pytest.fixture(scope="module")
def slider(tmp_path_factory):
    """The model's own end state, and the planner's model of a plant file (unchanged)."""
    needs_mjx()
    tmp = tmp_path_factory.mktemp("slider")
    s = load(tmp, "geom_friction = [0.5, 2.0]\n")
    x0 = jnp.asarray(s.system.default_x0())
    return {"model": s.system, "x0": x0, "end": pushed(s.system.step, x0), "drawn": s, "tmp": tmp}


@pytest.mark.mjx
def test_the_model_slides(slider):
    assert 0.2 < slider["end"][0] < 1.0 and slider["end"][2] > 0  # moving along +x after 0.5 s


@pytest.mark.mjx
def test_a_heavier_ball_is_left_behind_and_the_planner_model_is_unchanged(slider, tmp_path):
    s = load(tmp_path, "body_mass = { ball = 1.5 }\n")
    plant = s.closed_loop.plant.plant
    mm, pm = s.system.mj_model, plant.system.mj_model
    assert float(mm.body_mass[1]) == 1.0 and float(pm.body_mass[1]) == 1.5  # the plant's only
    np.testing.assert_allclose(pm.body_inertia[1], 1.5 * mm.body_inertia[1], rtol=1e-12)  # density x1.5
    assert float(pm.body_subtreemass[0]) == 1.5  # MuJoCo's derived constants follow
    end = pushed(plant.step_fn(s.system.step), slider["x0"], jnp.zeros(0))
    assert end[0] < slider["end"][0] - 0.05, (end, slider["end"])  # F/m smaller, friction larger: behind
    again = pushed(s.system.step, slider["x0"])  # the planner's model still moves as the model does
    np.testing.assert_array_equal(again, slider["end"])
    assert plant.describe()["overrides"] == {"body_mass.ball (x1.5)": "the body ball"}


@pytest.mark.mjx
def test_less_damping_lets_the_ball_run_further(slider, tmp_path):
    s = load(tmp_path, "dof_damping = 0.1\n")
    pm = s.closed_loop.plant.plant.system.mj_model
    np.testing.assert_allclose(pm.dof_damping, 0.1 * np.asarray(s.system.mj_model.dof_damping), rtol=1e-15)
    end = pushed(s.closed_loop.plant.plant.system.step, slider["x0"])
    assert end[0] > slider["end"][0] + 0.05, (end, slider["end"])


@pytest.mark.mjx
def test_a_friction_factor_drawn_per_seed_orders_the_slide(slider):
    plant = slider["drawn"].closed_loop.plant.plant
    assert plant.system is slider["model"] and plant.draws == (Draw("geom_friction", None, 0.5, 2.0),)
    step = plant.step_fn(slider["model"].step)
    ends = [pushed(step, slider["x0"], jnp.asarray([f]))[0] for f in (0.5, 1.0, 2.0)]
    assert ends[0] > ends[1] + 0.05 and ends[1] > ends[2] + 0.05, ends  # more friction, less slide
    assert ends[1] == pytest.approx(float(slider["end"][0]), abs=1e-12)  # a factor of 1 is the model


@pytest.mark.mjx
def test_a_damping_drawn_per_seed_steps_as_the_same_fixed_factor(slider, tmp_path):
    """The two routes agree: { x = [0.1, 0.1] } (a factor drawn per seed, an input of the traced step) and { x = 0.1 }
    (the model rebuilt with the joint's damping x0.1) move the ball alike, and further than the model."""
    drawn = load(tmp_path, "dof_damping = { x = [0.1, 0.1] }\n").closed_loop.plant.plant
    fixed = load(tmp_path, "dof_damping = { x = 0.1 }\n").closed_loop.plant.plant
    assert drawn.draws == (Draw("dof_damping", "x", 0.1, 0.1),) and fixed.draws == ()
    np.testing.assert_array_equal(fixed.system.mj_model.dof_damping, [0.05, 0.0])  # the x joint's only
    a = pushed(drawn.step_fn(slider["model"].step), slider["x0"], jnp.asarray([0.1]))
    b = pushed(fixed.system.step, slider["x0"])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert a[0] > slider["end"][0] + 0.05


@pytest.mark.mjx
def test_an_episode_steps_each_seed_with_its_recorded_factor(slider):
    """trajopt mpc over seeds 0..2: result.json's per-seed factors (and report.html's) are Plant.factors of each seed's
    key, and each seed's realised states (metrics.jsonl) are the drawn plant's rollout of its applied controls."""
    from trajopt.cli import app

    s = slider["drawn"]
    out = slider["tmp"] / "run"
    res = runner.invoke(app, ["mpc", s.source, "--seeds", "3", "--out", str(out), "--quiet", "--report"])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    drawn = result["plant"]["per_seed"]["geom_friction"]
    assert drawn["range"] == [0.5, 2.0] and result["seeds"] == [0, 1, 2]
    key = jax.random.PRNGKey(s.solve.key)
    plant = s.closed_loop.plant.plant
    expected = [float(plant.factors(jax.random.fold_in(key, seed))[0]) for seed in (0, 1, 2)]
    assert drawn["factors"] == expected
    report = (out / "report.html").read_text()  # the report's configuration table states them too
    assert "geom_friction in [0.5, 2.0]: " + ", ".join(f"seed {i} x{f:.4g}" for i, f in enumerate(expected)) in report
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step = jax.jit(plant.step_fn(slider["model"].step))
    for seed, f in zip((0, 1, 2), expected):
        mine = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["step"])
        x = jnp.asarray(mine[0]["x"])
        for r in mine[:-1]:
            x = step(x, jnp.asarray(r["u"]), jnp.asarray([f]))
        np.testing.assert_allclose(np.asarray(x), mine[-1]["x"], rtol=0, atol=1e-12)
    finals = [sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["step"])[-1]["x"][0] for seed in (0, 1, 2)]
    assert len(set(finals)) == 3


@pytest.mark.mjx
def test_the_python_api_takes_the_same_physics_keys(slider):
    """trajopt.mpc's plant={"scale": {...}} reads an mjx system's physics as [plant.scale] does (plant_of)."""
    from trajopt.checks import FieldError
    from trajopt.closedloop.plant import plant_of

    model = slider["model"]
    plant = plant_of(model, {"scale": {"body_mass": 2.0, "geom_friction": {"ball": (0.5, 2.0)}}})
    assert plant.draws == (Draw("geom_friction", "ball", 0.5, 2.0),)
    assert float(plant.system.mj_model.body_mass[1]) == 2.0 and float(model.mj_model.body_mass[1]) == 1.0
    assert plant.describe()["overrides"] == {"body_mass (x2)": "every body",
                                             "geom_friction.ball (x U[0.5, 2] per seed)":
                                                 "drawn per seed (result.json: plant.per_seed)"}
    with pytest.raises(FieldError, match=r"scale.dof_damping.y: found 'y', allowed: a named joint of the model: x, z"):
        plant_of(model, {"scale": {"dof_damping": {"y": 0.1}}})


# ------------------------------------------------------------------ refusals: exit 2, one line, nothing written


REFUSED = [
    ("body_masss = 1.5\n", "plant.scale.body_masss: unknown key (did you mean 'body_mass'?)"),
    ('body_mass = "heavy"\n', "plant.scale.body_mass: found 'heavy', allowed: a finite factor > 0 (a range drawn per "
                              "seed applies to dof_damping and geom_friction only"),
    ("body_mass = [1.0, 2.0]\n", "plant.scale.body_mass: found [1.0, 2.0], allowed: a finite factor > 0 (a range"),
    ("body_mass = 0.0\n", "plant.scale.body_mass: found 0.0, allowed: a finite factor > 0"),
    ("dof_damping = 0.1\nbody_mass = { ball = 1.5, payload = 2.0 }\n", "plant.scale.body_mass.payload: found 'payload', allowed: a named body "
                                                                    "of the model: ball"),
    ("body_mass = { payload = 1.5 }\n", "plant.scale.body_mass.payload: found 'payload', allowed: a named body of the "
                                        "model: ball"),
    ("dof_damping = { y = 0.1 }\n", "plant.scale.dof_damping.y: found 'y', allowed: a named joint of the model: x, "
                                    "z"),
    ("geom_friction = [2.0, 0.5]\n", "plant.scale.geom_friction: found [2.0, 0.5], allowed: a finite factor >= 0, or "
                                     "[low, high] (0 <= low <= high: a factor drawn per seed, uniformly)"),
    ("geom_friction = -1.0\n", "plant.scale.geom_friction: found -1.0, allowed: a finite factor >= 0"),
    ("geom_friction = { ball = [0.5] }\n", "plant.scale.geom_friction.ball: found [0.5], allowed: a finite factor"),
    ("geom_friction = {}\n", "plant.scale.geom_friction: found {}, allowed: a finite factor >= 0"),
]


@pytest.mark.mjx
@pytest.mark.parametrize("scale,message", REFUSED, ids=[r[0].split("=")[0].strip() + str(i) for i, r in enumerate(REFUSED)])
def test_a_bad_physics_scale_is_one_exit_2_line_and_nothing_written(tmp_path, scale, message):
    needs_mjx()
    from trajopt.cli import app

    path = write(tmp_path, problem_text(scale))
    out = tmp_path / "run"
    res = runner.invoke(app, ["mpc", path, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert f"{path}: {message}" in " ".join(res.output.split()), res.output
    assert not out.exists()


def test_a_hand_written_system_has_no_physics_keys(tmp_path):
    from trajopt.cli import app

    path = write(tmp_path, textwrap.dedent("""
        [system]
        name = "pendulum"
        [task]
        horizon = 5
        x0 = [0.0, 0.0]
        goal = [3.14, 0.0]
        Q = [1.0, 0.1]
        R = [0.01]
        Qf = [1.0, 0.1]
        [mpc]
        episode = 5
        horizon = 5
        [plant.scale]
        geom_friction = [0.5, 2.0]
        """))
    res = runner.invoke(app, ["validate", path])
    assert res.exit_code == 2 and f"{path}: plant.scale.geom_friction: unknown key" in res.output, res.output


# ------------------------------------------------------------------ the suite's MJX tasks


@pytest.mark.mjx
def test_the_suite_mjx_plants_carry_the_papers_perturbations():
    """problems/suite/finger_spinner.toml: payload (spinner) mass x1.5, damping x0.1, friction drawn per seed from
    [0.5, 2], on stiff contact; reacher.toml: damping x0.1 (no payload, no contact). The planners' models unchanged."""
    needs_mjx()
    import importlib.util

    from trajopt import spec

    s = spec.load(os.path.join(ROOT, "problems", "suite", "finger_spinner.toml"))
    plant = s.closed_loop.plant.plant
    mm, pm = s.system.mj_model, plant.system.mj_model
    spinner = 3  # world, proximal, distal, spinner
    np.testing.assert_allclose(pm.body_mass, np.where(np.arange(mm.nbody) == spinner, 1.5, 1.0) * mm.body_mass,
                               rtol=1e-15)
    np.testing.assert_allclose(pm.dof_damping, 0.1 * np.asarray(mm.dof_damping), rtol=1e-15)
    np.testing.assert_array_equal(pm.geom_friction, mm.geom_friction)  # scaled per seed, in the episode
    assert plant.draws == (Draw("geom_friction", None, 0.5, 2.0),)
    assert s.system.solref == (0.1, 1.0) and plant.system.solref == (0.02, 1.0)
    if importlib.util.find_spec("gymnasium") is None:
        pytest.skip("the reacher task needs gymnasium (pip install -e '.[suite]')")
    r = spec.load(os.path.join(ROOT, "problems", "suite", "reacher.toml"))
    rm, rp = r.system.mj_model, r.closed_loop.plant.plant.system.mj_model
    np.testing.assert_allclose(rp.dof_damping, 0.1 * np.asarray(rm.dof_damping), rtol=1e-15)
    assert float(rm.dof_damping[0]) == 1.0 and r.closed_loop.plant.plant.draws == ()
    np.testing.assert_array_equal(rp.body_mass, rm.body_mass)


@pytest.mark.mjx
def test_a_plant_value_the_contacts_rule_refuses_is_named_as_the_plant_key():
    """The finger's plant with a solref too stiff for its time step: refused as plant.solref (the key that set it),
    not system.solref (the model's table is fine)."""
    pytest.importorskip("mujoco")
    from trajopt import spec as spec_mod

    with pytest.raises(spec_mod.SpecError) as e:
        spec_mod.load(os.path.join(ROOT, "problems", "suite", "finger_spinner.toml"), ["plant.solref=[0.001, 1.0]"],
                      closed_loop=True)
    assert e.value.key == "plant.solref" and "timeconst" in str(e.value)
