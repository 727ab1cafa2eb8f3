-- Issue 16: a learner's history. A signed-in player's participation carries their user ID, and
-- user_sessions keys the same participations by user: one user's sessions are one index range, found
-- without touching any session's rows (participants and answers stay partitioned by quiz, so per-session
-- reads are as before). A user's answers are then read session by session, by quiz ID as today.
-- Anonymous players have no user ID and no user_sessions row.
ALTER TABLE participants ADD COLUMN IF NOT EXISTS user_id text;
CREATE TABLE IF NOT EXISTS user_sessions (
    user_id    text NOT NULL,
    quiz_id    text NOT NULL,
    player_id  text NOT NULL,
    joined_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, quiz_id)
);
-- The history's order, newest first, and its page cursor (joined_at, quiz_id).
CREATE INDEX IF NOT EXISTS user_sessions_newest ON user_sessions (user_id, joined_at DESC, quiz_id DESC);
