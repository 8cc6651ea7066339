"""``python -m trajopt`` is the same as the ``trajopt`` command."""

from trajopt._entry import main

main()
