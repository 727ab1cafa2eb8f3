"""DeleteUserData: a user's participations anonymised wherever quizmesh keeps their name.

The order makes the deletion retryable and keeps every rebuild anonymous. First the durable records
(PostgreSQL or SQLite), which quiz_svc's restore and leaderboard_svc's rebuild read after a Redis loss, so
no copy rebuilt from them from then on holds the name; then the live copies (quiz_svc's game state,
leaderboard_svc's rankings); last the user_sessions rows, the only link from the user to their players.
A failure before the last step leaves that link in place, so the same request, repeated, finds every
participation again and finishes the job; each step is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence

from persistence_svc.domain import DELETED_NICKNAME
from persistence_svc.ports import LiveCopies, ResultStore

# Players renamed per call to a live copy: a user's whole history in a few calls, each well below gRPC's
# message limit.
ERASE_CHUNK = 500


async def delete_user_data(store: ResultStore, copies: Sequence[LiveCopies], user_id: str) -> int:
    """Anonymises the user's participations everywhere; returns how many were still linked to the user
    (0 when a repeat finds the job done). Raises StoreUnavailable or LiveCopyUnavailable, after which
    the same call, repeated, finishes what this one began."""
    participations = await store.anonymise_user(user_id, DELETED_NICKNAME)
    for copy in copies:
        for start in range(0, len(participations), ERASE_CHUNK):
            await copy.erase(participations[start : start + ERASE_CHUNK], DELETED_NICKNAME)
    return await store.forget_user(user_id)
