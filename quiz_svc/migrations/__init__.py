"""quiz_svc's tables in PostgreSQL, as numbered migrations (quizmesh/migrations.py says how they run).

`quizmesh migrate quiz-svc` applies the files of this directory that the database lacks; quiz_svc
refuses to start until all of them are applied. A schema change is a new file with the next number,
never an edit of one that was released.
"""

from quizmesh.migrations import Schema

SCHEMA = Schema.of_package("quiz-svc", __name__)
