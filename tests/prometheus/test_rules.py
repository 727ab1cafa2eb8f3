"""The shipped alert rules offline: `promtool check rules`, `promtool test rules` with a case that fires
and one that stays quiet for every alert, a runbook section for every alert, and the time-scaled
copy the local Prometheus evaluates."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.prometheus_config import (
    SHIPPED_RULES,
    format_duration,
    parse_duration,
    rule_groups,
    scale_durations,
    scale_expression,
)

from .conftest import run_promtool

HERE = Path(__file__).resolve().parent
RUNBOOKS = SHIPPED_RULES.parents[2] / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/quizmesh/quizmesh/blob/main/docs/runbooks.md#"
ALERTS = {rule["alert"]: rule for group in rule_groups() for rule in group["rules"]}


def _write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def _unit_tests() -> dict[str, Any]:
    tests: dict[str, Any] = yaml.safe_load((HERE / "alerts_test.yaml").read_text())
    return tests


def test_promtool_accepts_the_shipped_rules(tmp_path: Path) -> None:
    done = run_promtool("check", "rules", str(_write_rules(tmp_path, rule_groups())))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def _run_unit_tests(directory: Path, groups: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of alerts_test.yaml against `groups`, each expected alert given the
    rule's fixed annotations besides its rendered summary."""
    _write_rules(directory, groups)
    tests = _unit_tests()
    tests["rule_files"] = ["rules.yaml"]
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            fixed = {k: v for k, v in ALERTS[check["alertname"]]["annotations"].items() if k != "summary"}
            for expected in check["exp_alerts"]:
                expected["exp_annotations"] = {**fixed, "summary": expected.pop("exp_summary")}
    (directory / "alerts_test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return run_promtool("test", "rules", str(directory / "alerts_test.yaml"))


def test_every_alert_passes_its_promtool_unit_tests(tmp_path: Path) -> None:
    done = _run_unit_tests(tmp_path, rule_groups())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in _unit_tests()["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == quiet == set(ALERTS)


def test_the_unit_tests_fail_when_an_alert_does_not_fire(tmp_path: Path) -> None:
    """A broken rule is caught: the same unit tests against a rule whose threshold cannot be met."""
    groups = rule_groups()
    for group in groups:
        for rule in group["rules"]:
            if rule["alert"] == "QuizmeshConsumerStalled":
                rule["expr"] = rule["expr"].replace("> 0", "> 1e12")
    done = _run_unit_tests(tmp_path, groups)
    assert done.returncode != 0
    failed = set(re.findall(r"alertname: (\w+),", done.stdout + done.stderr))
    assert failed == {"QuizmeshConsumerStalled"}


def _runbook_sections() -> dict[str, str]:
    text = RUNBOOKS.read_text()
    parts = re.split(r"^## (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_links_a_runbook_section_that_says_what_to_do(alert: str) -> None:
    assert ALERTS[alert]["annotations"]["runbook_url"] == RUNBOOK_BASE + alert.lower()
    section = _runbook_sections()[alert]
    for part in ("**What it means.**", "**Look first at.**", "**Fix.**"):
        assert part in section, f"{alert}: no {part}"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    assert set(_runbook_sections()) == set(ALERTS)


def test_durations_parse_and_print_as_prometheus_writes_them() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    for bad in ("5", "m5", "5 m", "5mm"):
        with pytest.raises(ValueError, match="not a Prometheus duration"):
            parse_duration(bad)
    assert format_duration(10) == "10s"
    assert format_duration(0.2) == "1s"


def test_scaling_shortens_ranges_subqueries_and_offsets_only() -> None:
    expr = 'rate(x{code=~"a|b"}[5m]) / max_over_time(y[30m:1m] offset 10m) > 5'
    assert scale_expression(expr, 1 / 30) == 'rate(x{code=~"a|b"}[10s]) / max_over_time(y[60s:2s] offset 20s) > 5'


def test_time_scaled_rules_are_valid_and_keep_everything_but_durations(tmp_path: Path) -> None:
    factor = 1 / 30
    scaled = scale_durations(rule_groups(), factor)
    done = run_promtool("check", "rules", str(_write_rules(tmp_path, scaled)))
    assert done.returncode == 0, done.stdout + done.stderr
    originals = {r["alert"]: r for g in rule_groups() for r in g["rules"]}
    for group in scaled:
        for rule in group["rules"]:
            original = originals[rule["alert"]]
            assert parse_duration(rule["for"]) == max(1, round(parse_duration(original["for"]) * factor))
            assert rule["labels"] == original["labels"] and rule["annotations"] == original["annotations"]
            assert re.sub(r"\[\w+\]", "[]", rule["expr"]) == re.sub(r"\[\w+\]", "[]", original["expr"])
