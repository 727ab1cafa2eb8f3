"""quizmesh's applications: the `quizmesh` command that starts every process, and quizctl."""
