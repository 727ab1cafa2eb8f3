"""The `quizmesh` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys

from apps.launcher import SERVICES, embedded_env, run_embedded, serve_one, stop_on_signals
from apps.migrate import SCHEMAS
from apps.migrate import run as run_migrations
from quizmesh.migrations import MigrationFailed
from quizmesh.process import CannotStart, ProcessSettings, start_process
from quizmesh.settings import SettingsError


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


async def _dev(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    ports = {
        "edge": args.port,
        "quiz": args.grpc_base_port,
        "leaderboard": args.grpc_base_port + 1,
        "persistence": args.grpc_base_port + 2,
    }
    env = embedded_env(os.environ, ports, args.sqlite)

    def ready(port: int) -> None:
        print(
            f"quizmesh (embedded) is running.\n"
            f"  player page:  http://127.0.0.1:{port}/\n"
            f"  host page:    http://127.0.0.1:{port}/host\n"
            f"  WebSocket:    ws://127.0.0.1:{port}/ws\n"
            f"  gRPC:         quiz 127.0.0.1:{ports['quiz']}, leaderboard 127.0.0.1:{ports['leaderboard']},"
            f" persistence 127.0.0.1:{ports['persistence']}\n"
            f"Press Ctrl+C to stop.",
            flush=True,
        )

    await run_embedded(env, stop, ready)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="quizmesh", description="Live quizzes at scale.")
    parser.add_argument("--log-level", help="the root logger's level (default: $QUIZMESH_LOG_LEVEL or INFO)")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run everything in one process, with in-memory engines and SQLite")
    dev.add_argument("--port", type=int, default=8080, help="the edge's HTTP/WebSocket port")
    dev.add_argument("--grpc-base-port", type=int, default=50051, help="first of three gRPC ports")
    dev.add_argument("--sqlite", default="quizmesh-dev.sqlite3", help="SQLite file for durable data")
    for name in SERVICES:
        commands.add_parser(name, help=f"run {name} alone, configured from the environment")
    migrate = commands.add_parser(
        "migrate", help="apply the PostgreSQL migrations the database lacks, as the migration role"
    )
    migrate.add_argument("schema", nargs="?", choices=sorted(SCHEMAS), help="one service's schema (default: all)")
    rebuild = commands.add_parser("rebuild-leaderboard", help="rebuild a quiz's Redis ranking from PostgreSQL")
    rebuild.add_argument("quiz_id")
    commands.add_parser("loadtest", help="simulate players over WebSockets (`quizmesh loadtest --help`)")
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["loadtest"]:
        try:
            from bench import loadtest  # the load generator lives apart, beside the benchmarks
        except ImportError as exc:  # picows is needed only here; bench/ only in a checkout
            install = "pip install 'quizmesh[bench]' (in a checkout: pip install -e '.[bench]')"
            print(f"quizmesh loadtest: {exc.name} is missing; {install}", file=sys.stderr)
            raise SystemExit(2) from None
        loadtest.main(arguments[1:])
        return
    args = parser.parse_args(argv)
    try:
        process = ProcessSettings.from_env(os.environ)
        if args.log_level:
            process = dataclasses.replace(process, log_level=args.log_level)
        # Services write ECS JSON lines for Filebeat; the interactive commands write plain text.
        start_process(
            process, service_name=args.command, default_log_format="ecs" if args.command in SERVICES else "plain"
        )
        if args.command == "dev":
            _run(_dev(args))
        elif args.command == "rebuild-leaderboard":
            from leaderboard_svc.rebuild import rebuild_command

            print(f"replayed {asyncio.run(rebuild_command(args.quiz_id))} stored events into the ranking")
        elif args.command == "migrate":
            print("\n".join(asyncio.run(run_migrations(args.schema))))
        else:
            _run(serve_one(args.command))
    except SettingsError as exc:
        print(f"quizmesh: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except CannotStart as exc:
        print(f"quizmesh {args.command}: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    except MigrationFailed as exc:
        print(f"quizmesh migrate: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass
