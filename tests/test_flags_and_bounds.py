"""Issue #30: a flag or key that applies to nothing the command runs is refused, never silently ignored; every
parser and numeric path is bounded (nesting depth, magnitudes, ranges, sizes). Each refusal is one exit-2 line
naming the file or flag, the key, what was found and what is allowed, before anything compiles or is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from trajopt import spec
from trajopt.cli import app

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "problems"
STIFF = PROBLEMS / "pushing_stiff.toml"
POLICY = PROBLEMS / "pendulum_wall_policy.toml"
HEAVISIDE = PROBLEMS / "heaviside.toml"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _refused(result, *words):
    """Exit 2, one line on stderr, every word in it, no traceback."""
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for w in words:
        assert w in message, (w, message)
    return message


@pytest.fixture
def nothing_compiles(monkeypatch):
    import trajopt.solver

    def refuse(*args, **kwargs):
        raise AssertionError("a loop was prepared before the refusal")

    monkeypatch.setattr(trajopt.solver, "prepare_each", refuse)
    monkeypatch.setattr(trajopt.solver, "_lower", refuse)


# ------------------------------------------------------------------ flags and keys that would be silently ignored


@pytest.mark.parametrize("args, words", [
    (["--set", "solve.iterations=5", "--iterations", "10"], ["--set solve.iterations and --iterations",
                                                              "solve.iterations set twice"]),
    (["--set", "solve.seeds=2", "--seeds", "3"], ["--set solve.seeds and --seeds"]),
    (["--set", 'solve.variants=["zobg"]', "--variants", "fobg"], ["--set solve.variants and --variants"]),
    (["--set", "oracle.aobg.gamma=1", "--set", "oracle.aobg.gamma=2"], ["--set oracle.aobg.gamma: found"]),
    (["--set", "oracle.aobg.gamma=1", "--set", "oracle.aobg={L=2.0}"], ["oracle.aobg.gamma set twice"]),
    (["--budget", "100", "--set", "variants.fobg.iterations=3"], ["--set variants.fobg.iterations: found with --budget"]),
    (["--budget", "100", "--set", "solve.iterations=3"], ["--set solve.iterations: found with --budget"]),
    (["--force"], ["--force: found without --out"]),
    (["--variants", "zobg,cem", "--x", "gradients"], ["--x gradients: found no selected variant that spends backward",
                                                       "zobg, cem spend none"]),
    (["--variants", "cem", "--set", 'solve.on_non_finite="skip"'], ["--set solve.on_non_finite:", "none is selected (cem"]),
    (["--set", 'solve.oracles=["zobg"]'], ["--set solve.oracles: names the variants only where solve.variants is not set"]),
])
def test_compare_refuses_what_would_be_ignored(nothing_compiles, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)  # --force without --out would write under runs/
    if "solve.oracles" in " ".join(args):  # a file whose solve.variants is set: solve.oracles chooses nothing
        path = tmp_path / "p.toml"
        path.write_text(STIFF.read_text().replace('oracles = ["fobg", "zobg", "aobg"]',
                                                  'oracles = ["fobg", "zobg", "aobg"]\nvariants = ["fobg"]'))
    else:
        path = STIFF
    _refused(invoke("compare", path, *args), *words)
    assert not (tmp_path / "runs").exists()


def test_what_is_not_ignored_is_accepted():
    s = spec.load(STIFF, ['solve.variants=["cem", "fobg"]'])
    assert spec.unreached_override(s, 'solve.on_non_finite="skip"', "variants") is None  # fobg skips
    assert spec.unreached_override(s, 'solve.on_non_finite="stop"', "variants") is None
    assert spec.unreached_override(s, 'solve.oracles=["zobg"]', "all") is None  # validate: diagnose would use it
    s = spec.load(STIFF)  # solve.variants not set: solve.oracles names the variants
    assert spec.unreached_override(s, 'solve.oracles=["zobg"]', "variants") is None
    assert spec.unreached_override(s, "solve.key=3", "oracles", "sweep") is None  # every study draws from the key


@pytest.mark.parametrize("verb, args", [
    ("sweep", ["--over", "system.stiffness=10,100"]), ("landscape", ["--range", "0:1:3"]), ("diagnose", []),
    ("gradcheck", [])])
@pytest.mark.parametrize("item", ["solve.iterations=5", "solve.seeds=3", 'solve.on_non_finite="skip"',
                                  'solve.variants=["fobg"]'])
def test_the_studies_refuse_the_run_keys_they_do_not_read(verb, args, item):
    problem = HEAVISIDE if verb == "landscape" else STIFF
    extra = ["--set", "system.dimension=1"] if verb == "landscape" else []
    key = item.partition("=")[0]
    _refused(invoke(verb, problem, *args, *extra, "--set", item), f"--set {key}: applies to the runs of solve and "
             f"compare", f"{verb} runs none")


def test_the_studies_refuse_an_oracle_list_they_replace_and_success_keys():
    _refused(invoke("sweep", STIFF, "--over", "system.stiffness=10,100", "--set", 'solve.oracles=["zobg"]'),
             "--set solve.oracles: sweep sets the oracles it studies itself")
    _refused(invoke("sweep", POLICY, "--over", "task.sigma=0.1,0.2", "--set", "success.radius=0.2"),
             "--set success.radius: applies to the held-aside success rate", "sweep computes none")


@pytest.mark.parametrize("verb, args", [
    ("compare", ["--iterations", "1", "--seeds", "1"]), ("diagnose", []), ("gradcheck", []),
    ("sweep", ["--over", "system.stiffness=10,100"])])
@pytest.mark.parametrize("item", ["mpc.horizon=30", "plant.disturbance=[]", "success.radius=0.5"])
def test_the_closed_loop_tables_are_refused_where_no_closed_loop_runs(verb, args, item):
    """[mpc], [plant] and a time-stepped problem's [success] are read by trajopt mpc (and mpc studies) only: a
    --set of them elsewhere ran unchanged under a title that named it."""
    problem = PROBLEMS / "pendulum_swingup.toml" if verb == "compare" else STIFF
    _refused(invoke(verb, problem, *args, "--set", item), f"--set {item.partition('=')[0]}: is read by closed-loop "
             "runs only", f"{verb} runs none")


def test_the_closed_loop_tables_reach_mpc_validate_and_a_policy_problems_success():
    swingup = spec.load(PROBLEMS / "pendulum_swingup.toml")
    assert spec.unreached_override(swingup, "mpc.episode=100", "variants", "mpc") is None
    assert spec.unreached_override(swingup, "mpc.episode=100", "all", "validate") is None
    assert spec.unreached_override(swingup, "mpc.episode=100", "variants", "study", closed_loop=True) is None
    assert spec.unreached_override(spec.load(POLICY), "success.radius=0.3", "variants", "compare") is None


def test_the_studies_default_to_the_oracles_a_policy_problem_has():
    """sweep's and landscape's default oracles include ddcg, which no policy problem has: the default refused every
    policy file ("unknown policy oracle 'ddcg'", an oracle the user never named)."""
    from trajopt.cli.sweeps import _overrides, _study_oracles

    names = _study_oracles(None, policy=True)
    assert "ddcg" not in names and {"fobg", "zobg", "aobg"} <= set(names)
    assert set(spec.load(POLICY, _overrides(POLICY, [], None, names, "sweep")).oracles) == set(names)
    _refused(invoke("diagnose", POLICY), "pendulum_wall_policy.toml: policy: found a policy problem, allowed: an "
             "open-loop problem")


SHADOWED = STIFF.read_text() + "\n[oracle.fobg]\nsamples = 20\n"


def test_a_shared_key_that_every_studied_oracle_overrides_in_its_own_table_is_refused():
    # [oracle.aobg] sets gamma and [oracle.fobg] samples: a shared oracle.gamma / oracle.samples loses to them
    s = spec.loads(SHADOWED, "p.toml", overrides=['solve.oracles=["fobg"]'])
    why = spec.unreached_override(s, "oracle.samples=4", "oracles", "sweep")
    assert "reaches no studied oracle: oracle.fobg.samples sets it in the file" in why
    s = spec.loads(SHADOWED, "p.toml", overrides=['solve.oracles=["fobg", "zobg"]'])
    assert spec.unreached_override(s, "oracle.samples=4", "oracles", "sweep") is None  # zobg takes it
    s = spec.loads(SHADOWED, "p.toml", overrides=['solve.variants=["aobg"]'])
    assert "oracle.aobg.gamma sets it in the file" in spec.unreached_override(s, "oracle.gamma=5", "variants")


def test_an_optimiser_key_that_every_selected_variant_sets_itself_is_refused():
    """A variant's own optimizer table wins over solve.optimizer's keys of the same optimiser (its keys merge over
    the file's): ``--set solve.optimizer.step=5`` with only such variants ran them unchanged, bit for bit, under a
    title that named the override. A key they do not set, or a selection with a variant that takes it, is kept."""
    swingup = PROBLEMS / "pendulum_swingup.toml"  # exact_adam and fobg_adam: their own adam, step 0.1
    mine = spec.loads(swingup.read_text(), str(swingup), overrides=['solve.variants=["exact_adam", "fobg_adam"]'])
    why = spec.unreached_override(mine, "solve.optimizer.step=5", "variants")
    assert why.startswith("reaches no selected variant: variants.exact_adam.optimizer.step, "
                          "variants.fobg_adam.optimizer.step set it"), why
    assert spec.unreached_override(mine, "solve.optimizer.b1=0.8", "variants") is None  # the file's b1 reaches them
    both = spec.loads(swingup.read_text(), str(swingup), overrides=['solve.variants=["fobg", "fobg_adam"]'])
    assert spec.unreached_override(both, "solve.optimizer.step=5", "variants") is None  # fobg takes the file's step
    _refused(invoke("compare", swingup, "--variants", "fobg_adam", "--set", "solve.optimizer.step=5"),
             "--set solve.optimizer.step: reaches no selected variant: variants.fobg_adam.optimizer.step sets it")


def test_samples_reaches_every_studied_oracle_even_one_with_its_own_table(tmp_path):
    """--samples N sets each studied oracle's own samples: before, it set the shared key, which the file's
    [oracle.fobg] samples = 20 silently outweighed for FoBG."""
    from trajopt.cli.sweeps import _overrides

    path = tmp_path / "p.toml"
    path.write_text(SHADOWED)
    s = spec.load(path, _overrides(path, [], 4, ["fobg", "zobg", "aobg"], "sweep"))
    assert {n: o.samples for n, o in s.oracles.items()} == {"fobg": 4, "zobg": 4, "aobg": 4}
    _refused(invoke("sweep", path, "--over", "system.stiffness=10,100", "--oracles", "fobg", "--samples", "4",
                    "--set", "oracle.fobg.samples=3"), "--set oracle.fobg.samples and --samples", "set twice")
    _refused(invoke("sweep", path, "--over", "oracle.fobg.samples=2,3", "--oracles", "fobg", "--samples", "4"),
             "--samples and --over oracle.fobg.samples")
    _refused(invoke("diagnose", path, "--samples", "4", "--set", "oracle.aobg.samples=3"),
             "--set oracle.aobg.samples and --samples")


def test_a_sweep_key_that_changes_nothing_a_studied_oracle_estimates_is_refused(tmp_path):
    from trajopt.cli.sweeps import _check_varies

    path = tmp_path / "p.toml"
    path.write_text(SHADOWED)
    specs = [(v, spec.load(path, ['solve.oracles=["fobg"]', f"oracle.samples={v}"])) for v in (2, 4)]
    with pytest.raises(typer.Exit):  # fobg's own samples = 20 wins at every value: a flat line
        _check_varies("oracle.samples", specs)
    specs = [(v, spec.load(path, ['solve.oracles=["fobg", "zobg"]', f"oracle.samples={v}"])) for v in (2, 4)]
    with pytest.raises(typer.Exit):  # zobg moves, fobg does not although it takes the key
        _check_varies("oracle.samples", specs)
    specs = [(v, spec.load(path, ['solve.oracles=["fobg", "aobg"]', f"oracle.gamma={v}"])) for v in (2, 4)]
    with pytest.raises(typer.Exit):  # [oracle.aobg] gamma = 1e8 wins
        _check_varies("oracle.gamma", specs)
    specs = [(v, spec.load(path, ['solve.oracles=["fobg", "aobg"]', f"oracle.aobg.gamma={v}"])) for v in (2, 4)]
    _check_varies("oracle.aobg.gamma", specs)  # reaches aobg; fobg does not take it (flat by nature)
    specs = [(v, spec.load(path, ['solve.oracles=["fobg"]', f"system.stiffness={v}"])) for v in (10, 20)]
    _check_varies("system.stiffness", specs)


def test_the_gradient_axis_note_names_the_variants_without_backward_passes():
    from trajopt.cli.compare import gradient_axis_note

    class Counted:
        def __init__(self, per_step):
            self.per_step = per_step

        def counts(self, field):
            return np.cumsum([0] + [self.per_step] * 3)

    results = {"fobg": Counted(10), "zobg": Counted(0), "cem": Counted(0)}
    assert gradient_axis_note(results, ["iterations", "gradients"]) == \
        " [backward-pass axis: zobg, cem spent none, drawn at 0]"
    assert gradient_axis_note(results, ["iterations"]) == ""
    assert gradient_axis_note({"fobg": Counted(10)}, ["gradients"]) == ""


@pytest.mark.parametrize("verb, args", [("sweep", ["--over", "system.stiffness=10,100"]),
                                        ("landscape", ["--range", "0:1:3"]), ("diagnose", [])])
def test_the_studies_refuse_force_without_out(tmp_path, monkeypatch, verb, args):
    monkeypatch.chdir(tmp_path)
    _refused(invoke(verb, HEAVISIDE if verb == "landscape" else STIFF, *args, "--force"), "--force: found without --out")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize("text, key", [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", ""),  # the parser itself would recurse to its limit
    ("x = " + "[" * 17 + "]" * 17 + "\n", "x[0][0][0][0]"),
    ("[" + ".".join(["t"] * 17) + "]\nv = 1\n", "t.t.t.t.t.t.t.t.t.t.t.t.t.t.t.t"),
    ("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", ""),
])
def test_nesting_deeper_than_the_bound_is_refused(tmp_path, text, key):
    path = tmp_path / "deep.toml"
    path.write_text(text + STIFF.read_text())
    message = _refused(invoke("validate", path), "deep.toml:", "found nesting deeper than 16 levels")
    assert key in message
    path.write_text("x = " + "[" * 15 + "1" + "]" * 15 + "\n" + STIFF.read_text())  # 16 levels: read, then unknown
    _refused(invoke("validate", path), "deep.toml: x: unknown key")


@pytest.mark.parametrize("item, words", [
    ("task.u_init=" + "[" * 5000 + "]" * 5000, "--set task.u_init: found nesting deeper than 16"),
    ("task.u_init=" + "[" * 16 + "1" + "]" * 16, "--set task.u_init"),
    (".".join(["task"] * 17) + "=1", "found nesting deeper than 16"),
])
def test_overrides_nested_too_deep_are_refused(item, words):
    _refused(invoke("validate", STIFF, "--set", item), words)


@pytest.mark.parametrize("item, key, found", [
    ("system.stiffness=1e200", "system.stiffness", "found 1e+200"),
    ("system.mass=1e-200", "system.mass", "found 1e-200"),
    ("oracle.sigma=1e308", "oracle.sigma", "found 1e+308"),
    ("system.mass=1" + "0" * 400, "system.mass", "found an integer of 401 digits"),
    ("task.x0=[0.0, 1e150, 0.0, 0.0]", "task.x0", "found 1e+150"),
    ("task.goal=[1.0, 2.0, 0.0, -1e-300]", "task.goal", "found -1e-300"),
])
def test_numbers_whose_arithmetic_would_overflow_are_refused(item, key, found):
    _refused(invoke("validate", STIFF, "--set", item), f"pushing_stiff.toml: {key}: {found}",
             "allowed: a number of magnitude between 1e-100 and 1e100 (or 0)")


def test_numbers_at_the_magnitude_bound_and_infinities_where_allowed_pass():
    s = spec.load(STIFF, ["system.stiffness=1e100", "system.mass=1e100", "task.x0=[0.0, 1e-100, 0.0, 0.0]",
                          "oracle.aobg.gamma=inf", 'solve.variants=["ilqr"]', "method.ilqr.u_min=-inf"])
    assert s.system.stiffness == 1e100 and s.oracles["aobg"].gamma == np.inf
    assert s.variants["ilqr"].method.u_min == -np.inf


@pytest.mark.parametrize("verb, args, words", [
    ("landscape", ["--range=-1e308:1e308:5"], ["--range: found '-1e308:1e308:5' (a value of magnitude 1e+308)"]),
    ("landscape", ["--range=0:1:1000000000"], ["--range: found N = 1000000000, allowed: at most 10,000"]),
    ("sweep", ["--over", "system.stiffness=logspace:0:400:3"], ["--over system.stiffness: found", "magnitude inf"]),
    ("sweep", ["--over", "system.stiffness=1e308,1e300"], ["magnitude 1e+308"]),
    ("sweep", ["--over", "system.stiffness=linspace:1:2:1000000000"], ["found COUNT 1000000000"]),
])
def test_ranges_are_bounded(tmp_path, verb, args, words):
    out = tmp_path / "out"
    problem = HEAVISIDE if verb == "landscape" else STIFF
    extra = ["--set", "system.dimension=1"] if verb == "landscape" else []
    _refused(invoke(verb, problem, *args, *extra, "--repeats", "2", "--out", out), *words)
    assert not out.exists()


@pytest.mark.parametrize("verb, args, words", [
    ("validate", ["--set", "oracle.samples=1000000", "--set", "task.horizon=100000"],
     ["pushing_stiff.toml: variants.fobg: found 5 seeds (solve.seeds) x 1,000,000 rollouts per step", "2e+13 bytes",
      "allowed: at most 1.72e+10 bytes (16 GiB"]),
    ("diagnose", ["--repeats", "100000000"], ["--repeats: found 100,000,000 repeats x 2 batches of 10 samples"]),
    ("gradcheck", ["--directions", "100000000"], ["--directions: found 2 x 100,000,000 directions x 3 steps"]),
    ("sweep", ["--over", "oracle.samples=10,100000000", "--repeats", "2"], ["--repeats: found 2 repeats x"]),
])
def test_sizes_are_bounded_before_anything_is_allocated(tmp_path, verb, args, words):
    _refused(invoke(verb, STIFF, *args, *(["--out", tmp_path / "o"] if verb in ("diagnose", "sweep") else [])),
             *words)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("item, words", [
    ("task.n_eval=100000000", "task.n_eval: found 100000000 x task.horizon 200 = 20,000,000,000 closed-loop steps"),
    ("task.n_init=10000000", "task.n_init: found 10000000 x task.horizon 200"),
    ("success.held_out=100000", "success.held_out: found 100000 x task.horizon 2000"),
    ("task.horizon=10000000", "task.horizon: found 10000000, allowed: an integer in 1..1000000"),
])
def test_a_policy_problems_closed_loop_evaluations_are_bounded(item, words):
    extra = ["--set", "task.horizon=2000"] if item.startswith("success") else []
    _refused(invoke("validate", POLICY, "--set", item, *extra), "pendulum_wall_policy.toml: " + words)


def test_a_user_system_whose_stable_dt_is_zero_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "e1_zero_dt.py").write_text(
        "import jax.numpy as jnp\n\nclass Sys:\n    state_size = 2\n    control_size = 1\n    dt = 0.1\n"
        "    def stable_dt(self):\n        return 0.0\n    def step(self, x, u):\n        return x\n")
    path = tmp_path / "p.toml"
    path.write_text('[system]\nname = "e1_zero_dt:Sys"\n[task]\nhorizon = 3\nx0 = [0.0, 0.0]\ngoal = [1.0, 0.0]\n'
                    'Q = [1.0, 1.0]\nR = [1.0]\n')
    try:
        _refused(invoke("validate", path), "system.name: e1_zero_dt:Sys: stable_dt() returned 0.0; expected a number > 0")
    finally:
        import sys

        sys.modules.pop("e1_zero_dt", None)


@pytest.mark.parametrize("wrap", ["7", "[7]", '["a"]', "[0, 0]"])
def test_a_policy_problems_wrap_is_checked_as_an_open_loop_tasks(wrap):
    """task.wrap of a policy problem was taken unchecked: a number was silently dropped, an index past the state
    was accepted (JAX clamps it: the last coordinate was wrapped instead) and a string ended in a traceback."""
    _refused(invoke("validate", POLICY, "--set", f"task.wrap={wrap}"),
             "pendulum_wall_policy.toml: task.wrap: found", "allowed: a list of distinct state indices in 0..1")
    assert spec.load(POLICY, ["task.wrap=[0]"]).task.wrap == (0,)


def test_a_sweep_over_a_factory_systems_parameter_is_not_refused(tmp_path, monkeypatch):
    """A user system built by a marked factory records none of its parameters in the resolved configuration, so a
    sweep over one must not be taken for a key that changes nothing."""
    from trajopt.cli.sweeps import _check_varies

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "e1_factory.py").write_text(
        "import jax.numpy as jnp\n\nclass _Sys:\n    state_size = 2\n    control_size = 1\n"
        "    def __init__(self, gain):\n        self.gain = gain\n"
        "    def step(self, x, u):\n        return x + self.gain * jnp.concatenate([u, u])\n\n"
        "def make(gain=1.0):\n    return _Sys(gain)\nmake.__trajopt_factory__ = True\n")
    path = tmp_path / "p.toml"
    path.write_text('[system]\nname = "e1_factory:make"\n[task]\nhorizon = 3\nx0 = [0.0, 0.0]\ngoal = [1.0, 0.0]\n'
                    'Q = [1.0, 1.0]\nR = [1.0]\n')
    try:
        specs = [(g, spec.load(path, ['solve.oracles=["fobg"]', f"system.gain={g}"])) for g in (1.0, 2.0)]
        assert [s.system.gain for _, s in specs] == [1.0, 2.0]
        _check_varies("system.gain", specs)
    finally:
        import sys

        sys.modules.pop("e1_factory", None)
