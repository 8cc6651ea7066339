"""Figures built from in-memory results say what they show."""

import jax
import jax.numpy as jnp
import numpy as np
from builders import random_quadratic

from trajopt.api import compare
from trajopt.methods import GradientMethod
from trajopt.optim import SGD
from trajopt.oracles import Exact, ZoBG
from trajopt.plots import convergence_figure


def test_a_curve_hidden_under_another_is_dashed_and_named():
    problem, *_ = random_quadratic((3, 2), 0)
    exact = GradientMethod(Exact(), SGD(0.05))
    results = compare(problem, {"first": exact, "twin": exact, "other": GradientMethod(ZoBG(samples=4), SGD(0.02))},
                      key=jax.random.PRNGKey(0), iterations=6, seeds=[0, 1])
    ax = convergence_figure(results, title="t").axes[0]
    lines = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert lines == {"first": "-", "twin (same curve as first)": "--", "other": "-"}


def test_a_long_title_is_wrapped_inside_the_figure():
    # the problem's name and every --set override: a diagnose title under three overrides ran off the figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    problem, *_ = random_quadratic((3, 2), 0)
    results = compare(problem, {"exact": GradientMethod(Exact(), SGD(0.05))}, key=jax.random.PRNGKey(0),
                      iterations=3, seeds=[0])
    title = "pushing_stiff [--set system.stiffness=30000.0, system.dt=0.0001, task.horizon=50, oracle.sigma=$0.05$]"
    for x in ("iterations", ("iterations", "rollouts")):  # an axes title, and a figure title over two columns
        fig = convergence_figure(results, x=x, title=title)
        renderer = FigureCanvasAgg(fig).get_renderer()
        text = fig._suptitle if fig._suptitle is not None else fig.axes[0].title
        assert r"\$0.05\$" in text.get_text()  # escaped as before (matplotlib would read $...$ as maths)
        box = text.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (x, box, fig.bbox)


def test_a_diverged_run_is_drawn_at_a_ceiling_and_the_other_curves_stay():
    """Costs near the float maximum (SGD 1e3 on a quadratic: U grows 2e3-fold per step until its cost overflows at
    about 1e300) made matplotlib's log limits and ticks overflow: no curve was drawn, not even the converging one.
    They are drawn at DRAWN_CEILING, and the legend says so; the converging variant's curve is untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from trajopt.plots import DRAWN_CEILING

    from trajopt.problem import Problem

    problem = Problem("bowl", jnp.ones((3, 2)), lambda U: jnp.sum(U**2) + 1.0)  # positive: a log axis
    results = compare(problem, {"wild": GradientMethod(Exact(), SGD(1e3)), "calm": GradientMethod(Exact(), SGD(0.05))},
                      key=jax.random.PRNGKey(0), iterations=60, seeds=[0])
    assert np.nanmax(results["wild"].cost[np.isfinite(results["wild"].cost)]) > 1e290  # the premise
    fig = convergence_figure(results, title="t")
    FigureCanvasAgg(fig).draw()  # raised OverflowError in matplotlib's tick formatter
    lines = {line.get_label(): np.asarray(line.get_ydata(), float) for line in fig.axes[0].get_lines()}
    assert set(lines) == {"wild (1/1 seeds stopped) (costs above 1e+200 drawn at it)", "calm"}
    assert np.nanmax(lines["wild (1/1 seeds stopped) (costs above 1e+200 drawn at it)"]) == DRAWN_CEILING
    np.testing.assert_array_equal(lines["calm"], results["calm"].cost[0])
    low, high = fig.axes[0].get_ylim()
    assert fig.axes[0].get_yscale() == "log" and 0 < low <= results["calm"].cost.min() and DRAWN_CEILING <= high < 1e300


def test_the_iterations_axis_has_whole_ticks():
    problem, *_ = random_quadratic((3, 2), 0)
    results = compare(problem, {"exact": GradientMethod(Exact(), SGD(0.05))}, key=jax.random.PRNGKey(0),
                      iterations=2, seeds=[0])
    ax = convergence_figure(results, title="t").axes[0]  # two iterations drew ticks at 0.25, 0.5, ...
    ax.get_figure().canvas.draw()
    ticks = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
    assert ticks and all(float(x).is_integer() for x in ticks), ticks


def test_legend_entries_are_the_labels_given_shown_literally():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    problem, *_ = random_quadratic((3, 2), 0)
    results = compare(problem, {"a": GradientMethod(Exact(), SGD(0.05)), "b$": GradientMethod(ZoBG(samples=4), SGD(0.02))},
                      key=jax.random.PRNGKey(0), iterations=4, seeds=[0, 1])
    fig = convergence_figure(results, labels={"a": "a: exact + sgd 0.05", "b$": r"b$\frac$: zobg"})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a: exact + sgd 0.05", r"b\$\frac\$: zobg"]
    FigureCanvasAgg(fig).draw()  # a '$' read as maths would fail here (a malformed formula)


def test_legend_labels_state_each_variants_method():
    from trajopt.runs import legend_labels

    adam = {"name": "adam", "step": 0.2, "schedule": "cosine"}
    summary = {"variants": {
        "fobg": {"kind": "oracle", "base": "fobg", "config": {"optimizer": {"name": "sgd", "step": 0.001}}},
        "tuned": {"kind": "oracle", "base": "fobg", "config": {"optimizer": adam, "sigma_schedule": "geometric",
                                                              "sigma_final": 0.0003}},
        "cem": {"kind": "method", "base": "cem"},
        "planner": {"kind": "method", "base": "cem"},
        "multi": {"kind": "oracle", "base": "exact", "config": {"optimizer": adam, "starts": 8, "start_spread": 0.01}},
        "cem4": {"kind": "method", "base": "cem", "config": {"starts": 4, "start_spread": 0.0}},
        "one": {"kind": "method", "base": "cem", "config": {"starts": 1}},
        "moved": {"kind": "method", "base": "cem", "config": {"starts": 1, "start_spread": 0.5}},
    }}
    assert legend_labels(summary) == {"fobg": "fobg + sgd 0.001",
                                      "tuned": "tuned: fobg + adam 0.2 cosine, σ geometric to 0.0003",
                                      "cem": "cem", "planner": "planner: cem",
                                      "multi": "multi: exact + adam 0.2 cosine, best of 8 starts (spread 0.01)",
                                      "cem4": "cem4: cem, best of 4 starts", "one": "one: cem",
                                      "moved": "moved: cem, 1 start (spread 0.5)"}
    # a folder read from disk is not trusted: missing or malformed keys drop words, never raise (trajopt report)
    damaged = {"oracles": {  # a folder written before variants
        "a": {"kind": "oracle", "base": "zobg", "config": {"optimizer": None, "sigma_schedule": "linear"}},
        "b": {"kind": "oracle", "base": "fobg", "config": {"optimizer": {"name": "sgd", "step": "x", "clip_norm": 5.0}}},
        "c": {"kind": "oracle", "base": "fobg", "config": None}, "d": "not a table",
        "e": {"kind": "method", "base": "cem", "config": {"starts": "x", "start_spread": 0.1}},
        "f": {"kind": "method", "base": "cem", "config": {"starts": 3, "start_spread": "y"}}}}
    assert legend_labels(damaged) == {"a": "a: zobg + ?, σ linear", "b": "b: fobg + sgd, clip 5",
                                      "c": "c: fobg + ?", "d": "d", "e": "e: cem", "f": "f: cem, best of 3 starts"}

def _texts(fig) -> str:
    """Every title, axis label and legend string of a figure, whitespace collapsed (titles are wrapped)."""
    parts = [fig._suptitle.get_text() if fig._suptitle is not None else ""]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        parts += [t.get_text() for t in legend.get_texts()] if legend is not None else []
    return " ".join(" ".join(parts).split())


def test_rollouts_figure_states_its_subset_and_the_tables_numbers():
    """The run's rollouts figure draws one seed per variant on the first 60 of the held-aside starts. Its text
    says which seed and how many starts of how many; the share it computes on the drawn starts is labelled as
    theirs (an independent count of the drawn paths' ends within the radius), and the numbers that claim the
    table's quantity are result.json's (`_success`: the same states, seeds and rule). The axes carry the
    system's own names (a pendulum's, not "ball x/y")."""
    from types import SimpleNamespace

    from trajopt.cli import compare as cli_compare
    from trajopt.policies import PolicyProblem
    from trajopt.policies.initial import Uniform
    from trajopt.policies.policies import Linear
    from trajopt.policies.problem import held_out_states
    from trajopt.policies.tennis import _trajectories, final_distances
    from trajopt.problem import QuadraticCost
    from trajopt.systems import Pendulum

    # problems/pendulum_wall_policy.toml's problem, and the part of its spec these read ([success])
    problem = PolicyProblem(name="pendulum", system=Pendulum(dt=0.02, wall_angle=0.5, wall_stiffness=10.0),
                            policy=Linear(bias=True), initial=Uniform(low=(-0.3, -2.0), high=(0.3, 2.0)),
                            task_cost=QuadraticCost(Q=jnp.diag(jnp.array([10.0, 0.1])), R=jnp.eye(1),
                                                    Qf=jnp.diag(jnp.array([10.0, 0.1])), goal=jnp.zeros(2)),
                            horizon=200, sigma=0.1, n_eval=1)
    s = SimpleNamespace(policy=SimpleNamespace(success_radius=0.1, held_out=80, positions=(0, 1)))
    gains = np.array([[[-1.0, -0.5, 0.0]], [[-0.3, -0.2, 0.0]], [[-2.0, -1.0, 0.0]]])  # three seeds' policies
    results = {"zobg": SimpleNamespace(U=gains, final_cost=np.array([3.0, 1.0, 2.0]), seeds=np.array([10, 11, 12]))}
    summary = {"variants": {"zobg": {}}}
    cli_compare._success(s, problem, results, summary)
    text = _texts(cli_compare._rollouts_figure(s, problem, results, "T", summary))

    assert "median-cost seed from the first 60 of 80 held-aside starts" in text, text
    # final costs 3, 1, 2: the median is the third seed (seed 12), whose gains are (-2, -1)
    X = np.asarray(_trajectories(problem, jnp.asarray(gains[2, 0]), held_out_states(problem, 80)))
    hits = final_distances(X, problem.task_cost.goal) <= 0.1
    k = int(hits[:60].sum())
    assert 0 < k < 60 and hits.sum() != round(hits[:60].mean() * 80)  # the subset's share is not the whole's
    assert "zobg seed 12 (median cost)" in text and f"shown: {k}/60 within 0.1 ({k / 60:.1%})" in text, text
    rates = summary["variants"]["zobg"]["success_rate"]
    assert rates[2] == hits.mean()  # the table's per-seed number is the same count on all 80 starts
    assert f"all 80 starts: {rates[2]:.1%}" in text, text
    median = summary["variants"]["zobg"]["median_success_rate"]
    assert median == np.median(rates) and f"table, median of 3 seeds: {median:.1%}" in text, text
    assert "ball" not in text and "theta" in text and "omega" in text


def test_trajectory_figure_labels_panels_with_the_systems_names():
    """State and control panels carry the system's own names (`state_names` / `control_names`); explicit names
    win; a system without names (or none given) gets x0.. / u0.., the contract's defaults."""
    from types import SimpleNamespace

    from trajopt.plots import trajectory_figure
    from trajopt.systems import Pendulum

    r = SimpleNamespace(X=np.zeros((2, 4, 2)), U=np.zeros((2, 3, 1)), final_cost=np.array([1.0, 0.5]),
                        seeds=np.array([0, 1]))
    labels = lambda fig: [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]  # noqa: E731
    assert labels(trajectory_figure({"a": r}, system=Pendulum())) == ["theta", "omega", "torque"]
    assert labels(trajectory_figure({"a": r})) == ["x0", "x1", "u0"]
    assert labels(trajectory_figure({"a": r}, state_names=["p", "q"], system=Pendulum())) == ["p", "q", "torque"]

    class Nameless:
        state_size, control_size = 2, 1

    assert labels(trajectory_figure({"a": r}, system=Nameless())) == ["x0", "x1", "u0"]


def test_every_registered_oracle_and_method_gets_its_own_colour_in_one_figure():
    """A figure of every oracle and method (the suite's ten variants, or more) draws each in a colour of its own,
    two classes that declare the same colour (cfd and fixed_alpha) included: the later one takes a spare."""
    from trajopt.methods import METHODS
    from trajopt.oracles import ORACLES
    from trajopt.plots import variant_colours

    names = list(ORACLES.names()) + [m for m in METHODS.names() if m not in ORACLES.names()]
    colours = variant_colours(names)
    assert len(set(colours.values())) == len(names), colours
