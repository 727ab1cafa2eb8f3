-- Issue 16: a quiz is authored once and run many times. Each run (session) keeps what the live path
-- keys by: a `quizzes` row under its own join code, holding the copy of the definition it runs. Above
-- them, `authored_quizzes` lists the quizzes as written, with their owner; a quiz's ID is its first
-- session's join code, so every quiz from before sessions becomes a quiz with one session of the
-- same join code, and its host credential keeps working.
CREATE TABLE authored_quizzes (
    quiz_id          text PRIMARY KEY REFERENCES quizzes (quiz_id),
    -- The identity token's subject of the author; NULL: owned by whoever holds the quiz's host credential.
    owner_user_id    text,
    created_at       timestamptz NOT NULL
);
CREATE INDEX authored_quizzes_owner ON authored_quizzes (owner_user_id, created_at DESC);
CREATE INDEX authored_quizzes_created_at ON authored_quizzes (created_at DESC);
CREATE TABLE sessions (
    session_id       text PRIMARY KEY REFERENCES quizzes (quiz_id),
    quiz_id          text NOT NULL REFERENCES authored_quizzes (quiz_id),
    -- The identity token's subject of the host; NULL: hosted with the session's host credential only.
    host_user_id     text,
    created_at       timestamptz NOT NULL
);
CREATE INDEX sessions_of_quiz ON sessions (quiz_id, created_at DESC);
INSERT INTO authored_quizzes (quiz_id, owner_user_id, created_at)
SELECT quiz_id, NULL, created_at FROM quizzes;
INSERT INTO sessions (session_id, quiz_id, host_user_id, created_at)
SELECT quiz_id, quiz_id, NULL, created_at FROM quizzes;
