-- Issue 14: question kinds and media. Quiz definitions (quizzes.definition, JSON) need no change: one
-- stored before kinds has no "kind" and reads as single choice questions (adapters/quiz_codec.py).
-- Pictures and audio clips are stored beside the quizzes, once per content: the media ID is the
-- SHA-256 of the bytes, so an upload of the same file again is the same row.
CREATE TABLE IF NOT EXISTS media (
    media_id     text PRIMARY KEY,
    content_type text NOT NULL,
    content      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
