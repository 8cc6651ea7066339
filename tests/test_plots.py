"""Figures built from in-memory results say what they show."""

import jax
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
