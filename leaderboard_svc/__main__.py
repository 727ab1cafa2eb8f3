"""`python -m leaderboard_svc`: runs the service alone, configured from the environment."""

from __future__ import annotations

import asyncio
import logging

from quizmesh.services import serve_one

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve_one("leaderboard-svc"))
