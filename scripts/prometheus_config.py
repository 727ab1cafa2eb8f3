"""Prometheus files derived from what deploy/ ships, for promtool and for a local Prometheus.

  python scripts/prometheus_config.py rules OUT [--time-scale F]
      the `spec` of deploy/observability/prometheus-rules.yaml (a PrometheusRule) as a plain rules
      file; with --time-scale every duration in it (`for:`, range selectors, subqueries, offsets)
      is multiplied by F, so a test sees an alert fire after seconds instead of minutes
  python scripts/prometheus_config.py config OUT --rules FILE --target JOB=HOST:PORT ...
      [--scrape-interval 1s] [--evaluation-interval 1s]
      a prometheus.yml scraping each target under its job (a job may be given several targets:
      one per process of a multi-node topology)

The rules exist once, in the PrometheusRule; everything here is computed from it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED_RULES = REPO / "deploy" / "observability" / "prometheus-rules.yaml"

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
# A range `[5m]`, a subquery `[30m:1m]`, or `offset 5m` in PromQL.
_RANGE = re.compile(r"\[(\w+)(?::(\w*))?\]")
_OFFSET = re.compile(r"\boffset\s+(\w+)")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as `5m` or `1h30m`."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def rule_groups(path: Path = SHIPPED_RULES) -> list[dict[str, Any]]:
    """The rule groups of the shipped PrometheusRule."""
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind") != "PrometheusRule":
        raise ValueError(f"{path} is not a PrometheusRule")
    groups: list[dict[str, Any]] = doc["spec"]["groups"]
    return groups


def scale_expression(expr: str, factor: float) -> str:
    def scale(match: re.Match[str]) -> str:
        return format_duration(parse_duration(match.group(0)) * factor)

    def scale_range(match: re.Match[str]) -> str:
        window = _DURATION.sub(scale, match.group(1))
        if match.group(2) is None:
            return f"[{window}]"
        return f"[{window}:{_DURATION.sub(scale, match.group(2))}]"

    expr = _RANGE.sub(scale_range, expr)
    return _OFFSET.sub(lambda m: "offset " + _DURATION.sub(scale, m.group(1)), expr)


def scale_durations(groups: Sequence[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """The same rules with every duration multiplied by `factor` (whole seconds, at least 1 s)."""
    scaled = []
    for group in groups:
        rules = []
        for original in group["rules"]:
            rule = {**original, "expr": scale_expression(original["expr"], factor)}
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = format_duration(parse_duration(rule[key]) * factor)
            rules.append(rule)
        scaled.append({**group, "rules": rules})
    return scaled


@dataclass(frozen=True)
class Target:
    job: str
    address: str  # host:port of a /metrics endpoint

    @classmethod
    def parse(cls, text: str) -> Target:
        job, sep, address = text.partition("=")
        if not sep or not job or ":" not in address:
            raise argparse.ArgumentTypeError(f"expected JOB=HOST:PORT, got {text!r}")
        return cls(job, address)


def prometheus_config(
    targets: Sequence[Target], rules_file: Path, *, scrape_interval: str = "1s", evaluation_interval: str = "1s"
) -> dict[str, Any]:
    jobs: dict[str, list[str]] = {}
    for target in targets:
        jobs.setdefault(target.job, []).append(target.address)
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": addresses}]} for job, addresses in sorted(jobs.items())
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rules = commands.add_parser("rules")
    rules.add_argument("out", type=Path)
    rules.add_argument("--time-scale", type=float, default=1.0)
    config = commands.add_parser("config")
    config.add_argument("out", type=Path)
    config.add_argument("--rules", type=Path, required=True)
    config.add_argument("--target", type=Target.parse, action="append", default=[])
    config.add_argument("--scrape-interval", default="1s")
    config.add_argument("--evaluation-interval", default="1s")
    args = parser.parse_args(argv)
    if args.command == "rules":
        if not 0 < args.time_scale <= 1:
            parser.error("--time-scale must be in (0, 1]")
        groups = rule_groups()
        if args.time_scale != 1:
            groups = scale_durations(groups, args.time_scale)
        args.out.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=120))
    else:
        if not args.target:
            parser.error("at least one --target JOB=HOST:PORT")
        document = prometheus_config(
            args.target,
            args.rules.resolve(),
            scrape_interval=args.scrape_interval,
            evaluation_interval=args.evaluation_interval,
        )
        args.out.write_text(yaml.safe_dump(document, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
