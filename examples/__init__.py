"""Examples for trajopt. A package so that ``[system] name = "examples.user_system.cart:CartPole"`` imports
from the repository root (see examples/user_system/README.md)."""
