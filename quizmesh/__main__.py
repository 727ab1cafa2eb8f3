"""`python -m quizmesh` is the `quizmesh` command."""

from quizmesh.cli import main

main()
