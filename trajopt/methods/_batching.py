"""One element at a time under ``vmap``: how a deterministic method's step stays the same alone and in a batch.

`trajopt.solve` (and the closed loop) ``vmap`` a method's step over seeds, and `trajopt.methods.MultiStart` over
starts. XLA compiles a batched program differently from the unbatched one: the reductions of a batched ``dot_general``
(the quadratic cost's ``einsum``, the matrix products of a rollout's VJP) add in another order, so a seed's cost and
gradient in a batch of 3 differ from the same seed's alone in the last bits (2e-13 of 1,800 on stiff pushing's
objective, 2e-14 in its gradient; the forward rollout itself is elementwise and does not differ). A method whose
step amplifies round-off (L-BFGS's curvature pairs and line search on stiff contact: 813.41 alone, 800.46 in a
batch of three identical seeds after 200 steps) then ends elsewhere depending on how many seeds ran beside it. A
second cost of ``vmap``: data-dependent loops (line searches, iLQR's regularisation loop) run as long as the
batch's longest and both sides of a branch are executed.

`per_element(fn)` returns fn with a batching rule (``jax.custom_batching.custom_vmap``) that runs the batch as a
``lax.map``: every element executes fn's own unbatched program (the same arithmetic, bit for bit, as a batch of
one), its loops stop at its own trip count and its branches are taken, not both evaluated. Nested ``vmap`` s nest
``lax.map`` s. What fn closes over (a closed-loop replan's measured start, which is batched over seeds) is made an
explicit argument first (traced to a jaxpr), so closures over batched values work. The price is that the elements
run one after another: right for the deterministic methods (iLQR, L-BFGS, exact or finite-difference gradients),
whose work per element is a few rollouts and a derivative, not for a sampler whose step is already a batch of
rollouts (those keep ``vmap``; their seeds are the same alone and in a batch as they are, which the tests pin).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import jax
from jax.custom_batching import custom_vmap

_VECTORISED = contextvars.ContextVar("trajopt_vectorised", default=False)


@contextlib.contextmanager
def vectorised() -> Iterator[None]:
    """While tracing inside it, ``per_element(fn, vectorise_ok=True)`` is fn itself: a caller that batches copies of
    one seed's computation (`trajopt.methods.MultiStart`'s starts) keeps ``vmap`` for a step whose cost is fixed (a
    gradient method's: 8 starts of exact gradients run 5 times slower one after another), where no loop runs in
    lockstep. A seed's starts are then one batch alone and in a batch of seeds alike."""
    token = _VECTORISED.set(True)
    try:
        yield
    finally:
        _VECTORISED.reset(token)


def _eval(jaxpr, n_consts: int, flat):
    return jax.core.eval_jaxpr(jaxpr, flat[:n_consts], *flat[n_consts:])


def per_element(fn: Callable, vectorise_ok: bool = False) -> Callable:
    """fn(*args) -> out (pytrees of arrays), evaluated so that under ``jax.vmap`` each element of the batch runs fn's
    unbatched program in turn (a ``lax.map``); without ``vmap`` it is fn. ``vectorise_ok``: fn itself (batched by
    ``vmap`` as usual) when traced inside `vectorised`. See the module docstring."""

    def wrapped(*args):
        if vectorise_ok and _VECTORISED.get():
            return fn(*args)
        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        jaxpr, consts = closed.jaxpr, list(closed.consts)
        n_consts = len(consts)

        @custom_vmap
        def call(flat):
            return _eval(jaxpr, n_consts, flat)

        @call.def_vmap
        def rule(axis_size, in_batched, flat):
            del axis_size
            batched = [i for i, b in enumerate(in_batched[0]) if b]

            def one(xs):
                full = list(flat)
                for i, x in zip(batched, xs):
                    full[i] = x
                return call(full)  # itself again: an enclosing vmap maps its own axis the same way

            out = jax.lax.map(one, [flat[i] for i in batched])
            return out, [True] * len(out)

        out = call(consts + jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)

    return wrapped
