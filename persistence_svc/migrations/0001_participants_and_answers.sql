-- persistence_svc's tables as released (0.1.0, commit 9cde7b3), when persistence_svc created them at
-- every start: IF NOT EXISTS keeps this a no-op on a database that release made.
CREATE TABLE IF NOT EXISTS participants (
    quiz_id text NOT NULL,
    player_id text NOT NULL,
    nickname text,
    joined_at timestamptz,
    quiz_elapsed_ms bigint,
    left_at timestamptz,
    kicked boolean NOT NULL DEFAULT false,
    PRIMARY KEY (quiz_id, player_id)
);
CREATE INDEX IF NOT EXISTS participants_join_order ON participants (quiz_id, joined_at, player_id);
CREATE TABLE IF NOT EXISTS answers (
    quiz_id text NOT NULL,
    question_index integer NOT NULL,
    player_id text NOT NULL,
    choice integer NOT NULL,
    correct boolean NOT NULL,
    points bigint NOT NULL,
    total_score bigint NOT NULL,
    streak integer NOT NULL,
    response_time_ms bigint NOT NULL,
    answered_at timestamptz NOT NULL,
    quiz_elapsed_ms bigint NOT NULL,
    event_id text NOT NULL UNIQUE,
    PRIMARY KEY (quiz_id, question_index, player_id)
);
CREATE INDEX IF NOT EXISTS answers_listing_order ON answers (quiz_id, question_index, answered_at, player_id);
