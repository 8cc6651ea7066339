import jax

import trajopt  # noqa: F401  (turns on float64)

jax.config.update("jax_enable_x64", True)
