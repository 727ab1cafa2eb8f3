"""scripts/redis/quizmesh.acl, the Redis ACL rules of the services' user, allows every command the Lua
scripts call (Redis checks a script's commands against the caller's ACL too) and every key prefix
the stores use, and nothing broad. The secure profile's end-to-end test covers the commands the
services send themselves (tests/security/test_secure_profile.py)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ACL = REPO / "scripts" / "redis" / "quizmesh.acl"


def _rules() -> list[str]:
    lines = [line for line in ACL.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, "the rules are one line, which scripts/infra.sh appends to `user NAME on >PASSWORD`"
    return lines[0].split()


def _allowed_commands() -> set[str]:
    return {rule[1:].lower() for rule in _rules() if rule.startswith("+")}


def test_every_command_a_lua_script_calls_is_allowed() -> None:
    scripts = sorted([*REPO.glob("quiz_svc/adapters/*.lua"), *REPO.glob("leaderboard_svc/adapters/*.lua")])
    assert len(scripts) >= 10
    called = {
        command.lower()
        for script in scripts
        for command in re.findall(r"redis\.p?call\(\s*['\"](\w+)['\"]", script.read_text())
    }
    assert len(called) >= 15
    assert called - _allowed_commands() == set()


def test_the_user_reaches_only_quizmeshs_keys_and_channels_and_no_dangerous_command() -> None:
    rules = _rules()
    assert [r for r in rules if r.startswith("~")] == ["~qz:*", "~lb:*"]
    assert [r for r in rules if r.startswith("&")] == ["&qz:*"]
    assert "-@all" in rules and "resetkeys" in rules and "resetchannels" in rules
    # Categories would let in what no one listed.
    assert [r for r in rules if r.startswith("+@")] == []
    assert _allowed_commands().isdisjoint({"keys", "flushall", "flushdb", "config", "debug", "acl", "eval", "shutdown"})
