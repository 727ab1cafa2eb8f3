"""quizmesh: live quizzes at scale. Shared runtime pieces live here; services live in their own packages."""
