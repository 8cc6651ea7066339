"""Your own system from TOML: a worked example (cart.py + cart.toml)."""
