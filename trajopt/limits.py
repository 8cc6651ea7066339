"""Bounds on the size of a run: one place for the numbers that the problem-file checks (`trajopt.spec`) and the
Python API's argument checks (`trajopt.solver.check_run`) both hold a run to. Plain integers; this module imports
nothing, so any module may use it.

Seeds and keys are folded into the PRNG as uint32 (``jax.random.fold_in``), so they must be < 2**32: a larger one
would draw the noise of its value mod 2**32, the same as another seed's. The history a run records is iterations x
seeds x (about 13 arrays: the cost and the info fields) x 8 bytes per variant, about 10 GiB at iterations x seeds =
`MAX_HISTORY` (the CLI streams a history past ``TRAJOPT_HISTORY_MEMORY`` to disk, and writes metrics.jsonl, about
300 bytes per iteration and seed, as it goes).
"""

MAX_SEED = 2**32 - 1         # a seed number (or a file's solve.key): a uint32
MAX_ITERATIONS = 10**7       # iterations of one run (and a chunk's length)
MAX_HISTORY = 10**8          # iterations x number of seeds
MAX_SEEDS = 100_000          # number of seeds
