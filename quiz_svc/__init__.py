"""quiz_svc: authors quizzes, admits players and judges answers on server time."""
