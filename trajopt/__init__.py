"""trajopt: trajectory optimisation through contact with pluggable gradient oracles.

Importing trajopt turns on float64 and a CPU compiler setting (see `trajopt._setup`).
"""

from trajopt import _setup

_setup.configure()

__version__ = "0.1.0"
