"""`python -m apps` is the `quizmesh` command (`make dev` runs it so, without needing the script on PATH)."""

from apps.cli import main

main()
