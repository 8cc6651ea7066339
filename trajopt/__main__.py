"""``python -m trajopt`` is the same as the ``trajopt`` command."""

from trajopt.cli import main

main()
