"""The Python face: the README's "From Python" example runs as written, `trajopt.load` and `trajopt.compare`
give the CLI's numbers, and importing trajopt changes only what it documents."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from matplotlib.figure import Figure

import trajopt

ROOT = Path(__file__).resolve().parent.parent


def readme_python_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs_as_written():
    namespace: dict = {}
    exec(compile(readme_python_block(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    results, fig = namespace["results"], namespace["fig"]
    assert list(results) == ["fobg", "aobg_adam"]
    assert isinstance(fig, Figure)
    for r in results.values():
        assert r.status == ["ok"] * 4
        assert np.all(r.final_cost < 0.2 * r.cost[:, 0])  # both variants cut the cost by more than 5x


def test_example_script_is_the_readme_walkthrough(tmp_path):
    script = (ROOT / "examples" / "python_api.py").read_text(encoding="utf-8")
    for line in readme_python_block().strip().splitlines():
        assert line in script, f"README line not in examples/python_api.py: {line}"
    ns = runpy.run_path(str(ROOT / "examples" / "python_api.py"), run_name="not_main")
    assert set(ns["results"]) == {"fobg", "aobg_adam"}


def test_load_and_compare_match_solve():
    # the size of the next test's runs (3 iterations, 2 seeds, horizon 10): its aobg is this one's program
    loaded = trajopt.load(ROOT / "problems" / "pushing_stiff.toml", ["solve.iterations=3", "solve.seeds=2",
                                                                      "task.horizon=10"])
    assert list(loaded.variants) == ["fobg", "zobg", "aobg"]
    results = loaded.compare(["zobg", "aobg"])
    assert list(results) == ["zobg", "aobg"]
    direct = trajopt.solve(loaded.problem, loaded.variants["aobg"], key=jax.random.PRNGKey(0), iterations=3,
                           seeds=[0, 1])
    np.testing.assert_array_equal(results["aobg"].cost, direct.cost)


def test_loaded_compare_runs_a_variant_the_file_does_not_run_by_default():
    # `--variants tuned` works on the command line; from Python, naming it must too (it used to be a KeyError)
    loaded = trajopt.load(ROOT / "problems" / "pushing_stiff.toml", ["solve.seeds=2", "task.horizon=10",
                                                                      "solve.iterations=5"])
    assert "tuned" not in loaded.variants
    results = loaded.compare(["aobg", "tuned"], iterations=3)
    assert list(results) == ["aobg", "tuned"]
    # the cosine step spans the 3 iterations run (not the 5 of the load's own solve.iterations)
    tuned = results["tuned"].method  # eight starts of exact gradients under Adam with a cosine step
    assert tuned.starts == 8 and tuned.method.oracle.name == "exact" and tuned.method.optimizer.decay_steps == 3
    assert results["tuned"].iterations == 3
    with pytest.raises(trajopt.SpecError, match="solve.variants.*nonesuch"):
        loaded.compare(["nonesuch"], iterations=3)
    detached = trajopt.Loaded(problem=loaded.problem, variants=loaded.variants, spec=loaded.spec)  # not from a file
    with pytest.raises(KeyError, match="'tuned' not in this problem"):
        detached.compare(["tuned"])


def test_public_names_resolve_and_solve_is_the_function():
    for name in trajopt.__all__:
        assert getattr(trajopt, name) is not None
    assert callable(trajopt.solve) and trajopt.solve.__module__ == "trajopt.solver"


def _python(code: str) -> subprocess.CompletedProcess:
    """A fresh interpreter with none of the settings this test process inherited from importing trajopt."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_import_changes_no_undocumented_global_state():
    r = _python(
        "import sys, matplotlib; before = matplotlib.get_backend()\n"
        "import trajopt\n"
        "assert 'jax' not in sys.modules, 'importing trajopt imported jax'\n"
        "import trajopt.plots, trajopt.report\n"
        "assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())\n"
        "import jax; assert jax.config.jax_enable_x64\n"
        "import os; assert 'xla_cpu_small_while_loop_byte_threshold' in os.environ['XLA_FLAGS']\n"
        "print('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_warns_once_when_jax_ran_first():
    r = _python(
        "import warnings; warnings.simplefilter('always')\n"
        "import jax.numpy as jnp; jnp.ones(3).block_until_ready()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import trajopt\n"
        "msgs = [str(x.message) for x in w if x.category.__name__ == 'SlowLoopWarning']\n"
        "assert len(msgs) == 1 and 'XLA_FLAGS' in msgs[0], msgs\n"
        "import jax; assert jax.config.jax_enable_x64\n"
        "print('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
def test_api_doc_lists_every_public_name():
    doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert [n for n in trajopt.__all__ if n != "__version__" and f"`{n}" not in doc] == []


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_loaded_compare_runs_each_variant_for_its_own_iterations_unless_told(tmp_path):
    # a [variants] table's own `iterations` holds from Python as on the command line, and iterations=N reaches every
    # variant with its schedules re-resolved for N (a cosine step that ends at the run's last iteration)
    problem = tmp_path / "p.toml"
    text = (ROOT / "problems" / "pushing_soft.toml").read_text()
    assert "\niterations = 500\n" in text  # [solve]'s: made short for the test
    problem.write_text(text.replace("\niterations = 500\n", "\niterations = 6\n", 1) + "\n[variants.long]\n"
                       "oracle = \"exact\"\niterations = 7\noptimizer = { name = \"adam\", step = 0.2, schedule = \"cosine\" }\n")
    loaded = trajopt.load(problem, ['solve.variants=["long", "zobg"]', "task.horizon=20", "solve.iterations=3"])
    assert loaded.spec.variants["long"].iterations == 3 and loaded.variants["long"].optimizer.decay_steps == 3
    loaded = trajopt.load(problem, ['solve.variants=["long", "zobg"]', "task.horizon=20"])
    results = loaded.compare(seeds=[0])
    assert results["long"].iterations == 7 and results["zobg"].iterations == 6
    assert loaded.variants["long"].optimizer.decay_steps == 7
    results = loaded.compare(iterations=4, seeds=[0])
    assert results["long"].iterations == 4 and results["zobg"].iterations == 4
    assert results["long"].method.optimizer.decay_steps == 4  # the schedule spans the run it is in
    with pytest.raises(ValueError, match="no number of steps for 'zobg'"):
        trajopt.compare(loaded.problem, loaded.variants, key=loaded.key, iterations={"long": 2})


def _pushing_basins():
    return runpy.run_path(str(ROOT / "examples" / "pushing_basins.py"), run_name="not_main")


def test_pushing_basins_counts_separate_contacts():
    pushes = _pushing_basins()["pushes"]
    gap = np.array([[0.1, -0.1, -0.2, 0.05, 0.1, -0.01, 0.2], [-0.1, -0.1, 0.1, 0.1, 0.1, 0.1, -0.3]])  # object - pusher - 1
    X = np.zeros((2, 7, 4))
    X[:, :, 1] = 1.0 + gap
    assert pushes(X, 1.0).tolist() == [2, 2]  # touching at t = 0 counts; a contact lasting several steps counts once
    assert pushes(X, 0.0).tolist() == [0, 0]


@pytest.mark.slow  # about 4 min: CI's slow job runs it
def test_pushing_basins_script_prints_its_table(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "pushing_basins.py")], capture_output=True, text=True,
                       timeout=1500)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| configuration")]
    assert len(rows) == len(_pushing_basins()["CONFIGS"])
    for row in rows:  # 50 runs per configuration, each counted in one basin
        counts = [int(m) for m in re.findall(r"(\d+) at \d", row)]
        assert sum(counts) == 50 and re.search(r"\| \d+ % \|", row), row


@pytest.mark.parametrize("args, words", [
    ((None,), "path: found None (NoneType), allowed: the path of a TOML problem file"),
    ((123,), "path: found 123 (int)"),
    (("STIFF", None), "overrides: found None (NoneType), allowed: a list of 'KEY=VALUE' strings"),
    (("STIFF", [1]), "overrides: found [1] (list), allowed: a list of 'KEY=VALUE' strings"),
    # a string is iterable: it was read character by character, and the error named a key 'o' never written
    (("STIFF", "oracle.aobg.gamma=1"), "overrides: found 'oracle.aobg.gamma=1' (str)"),
])
def test_load_names_arguments_of_the_wrong_type(args, words):
    problem = str(ROOT / "problems" / "pushing_stiff.toml")
    args = tuple(problem if a == "STIFF" else a for a in args)
    with pytest.raises(TypeError, match=re.escape(words)):
        trajopt.load(*args)
    assert trajopt.load(problem, ("system.stiffness=10",)).spec.system.stiffness == 10.0  # a tuple is a list here


def test_loaded_compare_names_an_unknown_keyword():
    """A misspelt keyword reached a private function ("_compare() got an unexpected keyword argument")."""
    loaded = trajopt.load(str(ROOT / "problems" / "pushing_stiff.toml"))
    with pytest.raises(TypeError, match=r"^Loaded.compare: found keyword argument\(s\) chunks, allowed: variants, "
                                        r"iterations, seeds, .*chunk"):
        loaded.compare(["zobg"], iterations=1, chunks=2)


@pytest.mark.parametrize("iterations, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_loaded_compare_states_the_files_range_of_iterations(iterations, error):
    """Loaded.compare(iterations=N) sets the file's solve.iterations (1..): -1 and 1.5 were refused by solve's
    own check, whose message offered the 0 that Loaded.compare(iterations=0) refuses."""
    loaded = trajopt.load(str(ROOT / "problems" / "pushing_stiff.toml"))
    with pytest.raises(error, match=r"^iterations: found .*, allowed: an integer in 1\.\.10,000,000 \(a file's "
                                    r"solve\.iterations\)$"):
        loaded.compare(["zobg"], iterations=iterations)
