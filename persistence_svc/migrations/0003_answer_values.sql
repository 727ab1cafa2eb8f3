-- Issue 14: every question kind's answer. `answer` holds the answer as given, in the JSON mapping of
-- quizmesh.quiz.v1.AnswerValue ({"choice": 1}, {"choices": [0, 2]}, {"truth": true}, {"text": "..."},
-- {"order": [2, 0, 1]}, {"number": "12.5"}); `answer_text` the answer in words for the results CSV;
-- `credit` the share of the points earned before the speed factor ("1", "0", "3/4"). `choice` stays,
-- filled for single choices, for readers from before.
ALTER TABLE answers ADD COLUMN IF NOT EXISTS answer jsonb;
ALTER TABLE answers ADD COLUMN IF NOT EXISTS answer_text text;
ALTER TABLE answers ADD COLUMN IF NOT EXISTS credit text;
-- Rows stored before kinds are single choice answers: their choice, its index as text (the choice's
-- words were never stored), and full credit when correct.
UPDATE answers SET answer = jsonb_build_object('choice', choice), answer_text = choice::text,
                   credit = CASE WHEN correct THEN '1' ELSE '0' END
WHERE answer IS NULL;
ALTER TABLE answers ALTER COLUMN answer SET NOT NULL;
ALTER TABLE answers ALTER COLUMN answer_text SET NOT NULL;
ALTER TABLE answers ALTER COLUMN credit SET NOT NULL;
