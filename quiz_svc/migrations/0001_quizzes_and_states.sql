-- quiz_svc's tables as released (0.1.0, commit 9cde7b3), when quiz_svc created them at every start:
-- IF NOT EXISTS keeps this a no-op on a database that release made.
CREATE TABLE IF NOT EXISTS quizzes (
    quiz_id     text PRIMARY KEY,
    title       text NOT NULL,
    definition  jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS quizzes_created_at ON quizzes (created_at DESC);
CREATE TABLE IF NOT EXISTS quiz_states (
    quiz_id             text PRIMARY KEY REFERENCES quizzes (quiz_id),
    phase               text NOT NULL,
    question_index      integer NOT NULL,
    question_count      integer NOT NULL,
    open_ms             bigint NOT NULL,
    close_ms            bigint NOT NULL,
    leaderboard_visible boolean NOT NULL,
    version             bigint NOT NULL
);
