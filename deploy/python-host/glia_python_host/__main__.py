"""`python -m glia_python_host`: see `cli`."""

from glia_python_host.cli import main

main()
