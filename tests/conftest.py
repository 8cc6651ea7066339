import atexit
import os
import shutil
import tempfile

# The test suite never writes to the user's compilation cache: a throw-away one for this session (processes the
# tests start inherit it), unless the cache is turned off (TRAJOPT_CACHE=0).
_TEST_CACHE = tempfile.mkdtemp(prefix="trajopt-test-cache-")
os.environ["TRAJOPT_CACHE_DIR"] = _TEST_CACHE
atexit.register(shutil.rmtree, _TEST_CACHE, ignore_errors=True)

import jax

import trajopt  # noqa: F401  (turns on float64)

jax.config.update("jax_enable_x64", True)
