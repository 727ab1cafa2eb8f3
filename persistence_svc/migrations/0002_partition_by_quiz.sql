-- answers and participants become hash-partitioned by quiz ID: one quiz's rows sit in one partition,
-- which every read of the service (by quiz) and every batch of writes touches. A primary key or unique
-- constraint of a partitioned table must contain the partition key, hence UNIQUE (quiz_id, event_id):
-- an event ID is derived from its quiz, question and player, so it is no weaker than event_id alone.

-- Part 1: the tables 0001 made are moved aside, with their indexes, so that the partitioned tables can
-- take their names; part 2 below copies their rows over. A database that has the partitioned tables
-- already (made by a development build that ran this file at start-up) is left as it is.
DO $$
DECLARE
    old text;
BEGIN
    FOREACH old IN ARRAY ARRAY['answers', 'participants'] LOOP
        IF (SELECT relkind FROM pg_class WHERE oid = to_regclass(old)) = 'r' THEN
            EXECUTE format('ALTER TABLE %I RENAME TO %I', old, old || '_unpartitioned');
            EXECUTE format('ALTER INDEX IF EXISTS %I RENAME TO %I', old || '_pkey', old || '_unpartitioned_pkey');
        END IF;
    END LOOP;
    ALTER INDEX IF EXISTS answers_event_id_key RENAME TO answers_unpartitioned_event_id_key;
    IF to_regclass('answers_unpartitioned') IS NOT NULL THEN
        ALTER INDEX IF EXISTS answers_listing_order RENAME TO answers_unpartitioned_listing_order;
    END IF;
    IF to_regclass('participants_unpartitioned') IS NOT NULL THEN
        ALTER INDEX IF EXISTS participants_join_order RENAME TO participants_unpartitioned_join_order;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS participants (
    quiz_id text NOT NULL,
    player_id text NOT NULL,
    nickname text,
    joined_at timestamptz,
    quiz_elapsed_ms bigint,
    left_at timestamptz,
    kicked boolean NOT NULL DEFAULT false,
    PRIMARY KEY (quiz_id, player_id)
) PARTITION BY HASH (quiz_id);
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
    event_id text NOT NULL,
    PRIMARY KEY (quiz_id, question_index, player_id),
    UNIQUE (quiz_id, event_id)
) PARTITION BY HASH (quiz_id);
CREATE INDEX IF NOT EXISTS answers_listing_order ON answers (quiz_id, question_index, answered_at, player_id);

-- 32 partitions each (docs/operations.md, PostgreSQL). Changing the number means re-creating the
-- tables: choose it for the largest deployment (each partition can also be moved to its own tablespace).
DO $$
DECLARE
    parent text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['answers', 'participants'] LOOP
        FOR remainder IN 0..31 LOOP
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES WITH (MODULUS 32, REMAINDER %s)',
                parent || '_p' || remainder, parent, remainder
            );
        END LOOP;
    END LOOP;
END $$;

-- Part 2: the rows of the tables moved aside, then those tables go. The copy holds its locks for as long as
-- it takes: on a large database, run it in a maintenance window.
DO $$
BEGIN
    IF to_regclass('answers_unpartitioned') IS NOT NULL THEN
        INSERT INTO answers (quiz_id, question_index, player_id, choice, correct, points, total_score, streak,
                             response_time_ms, answered_at, quiz_elapsed_ms, event_id)
        SELECT quiz_id, question_index, player_id, choice, correct, points, total_score, streak,
               response_time_ms, answered_at, quiz_elapsed_ms, event_id
        FROM answers_unpartitioned
        ON CONFLICT DO NOTHING;
        DROP TABLE answers_unpartitioned;
    END IF;
    IF to_regclass('participants_unpartitioned') IS NOT NULL THEN
        INSERT INTO participants (quiz_id, player_id, nickname, joined_at, quiz_elapsed_ms, left_at, kicked)
        SELECT quiz_id, player_id, nickname, joined_at, quiz_elapsed_ms, left_at, kicked
        FROM participants_unpartitioned
        ON CONFLICT DO NOTHING;
        DROP TABLE participants_unpartitioned;
    END IF;
END $$;
