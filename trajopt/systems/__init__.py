"""Physical systems, one module each, registered by the name used in a problem file's ``[system] name``.

| name      | module      | what it is |
|-----------|-------------|------------|
| pushing   | pushing.py  | two blocks, penalty contact (the paper's pushing / "curling" example) |
"""

from trajopt.registry import Registry
from trajopt.systems.base import System, describe, parameter_types
from trajopt.systems.pushing import Pushing

SYSTEMS: Registry[type] = Registry("system")
SYSTEMS.register("pushing", Pushing)

__all__ = ["SYSTEMS", "System", "Pushing", "describe", "parameter_types"]
