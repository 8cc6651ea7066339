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
