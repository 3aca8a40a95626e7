"""The `likeness` command: up, down, status, migrate, schemas (one sub-command per function below)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from services.launcher.settings import HOST, LauncherSettings, RunInfo
from services.runtime.logs import configure_logging

__all__ = ["main"]

_CHECK_TIMEOUT_S = 5.0


def cmd_up(settings: LauncherSettings, _args: argparse.Namespace) -> int:
    """Start NATS, Postgres and every service; supervise until Ctrl-C or SIGTERM."""
    from services.launcher.supervisor import up

    return up(settings)


def cmd_down(settings: LauncherSettings, _args: argparse.Namespace) -> int:
    """Stop the running `up` (SIGTERM) and wait until it has stopped everything."""
    info = RunInfo.read(settings.state_dir)
    if info is None or not info.up_alive():
        print(f"Likeness is not running (state dir {settings.state_dir})")
        return 0
    timeout_s = settings.stop_timeout_s + 30.0  # services, then Postgres and NATS, each with their own timeout
    try:
        os.kill(info.pid, signal.SIGTERM)
        psutil.Process(info.pid).wait(timeout=timeout_s)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass
    except psutil.TimeoutExpired:
        print(f"`up` (pid {info.pid}) still running after {timeout_s:.0f}s", file=sys.stderr)
        return 1
    print("Likeness is down")
    return 0


def cmd_status(settings: LauncherSettings, _args: argparse.Namespace) -> int:
    """Print a table of NATS, Postgres and each service's health; 0 all good, 1 some not, 2 not running."""
    from services.launcher.probe import probe_all

    info = RunInfo.read(settings.state_dir)
    if info is None or not info.up_alive():
        print(f"Likeness is not running (state dir {settings.state_dir})")
        return 2
    rows = asyncio.run(probe_all(info, _CHECK_TIMEOUT_S))
    table = [("NAME", "PID", "ADDRESS", "STATE", "DETAIL"), *(row.cells() for row in rows)]
    widths = [max(len(cells[i]) for cells in table) for i in range(4)]
    for cells in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells[:4], widths, strict=True)) + "  " + cells[4])
    return 0 if all(row.ok for row in rows) else 1


def cmd_migrate(settings: LauncherSettings, args: argparse.Namespace) -> int:
    """Apply the event-log migrations to the configured, running or embedded database (see --wait, --provision)."""
    if args.wait:
        return _wait_for_schema(settings, args.timeout)
    from services.launcher.embedded import EmbeddedError, EmbeddedPostgres
    from services.launcher.supervisor import StartupError, migrate

    if args.provision and settings.nats_url is None:
        print("--provision needs LIKENESS_NATS_URL (the JetStream server to create the streams on)", file=sys.stderr)
        return 2
    running = RunInfo.read(settings.state_dir)
    # While `up` runs, its embedded Postgres is used as is: starting our own would stop it afterwards.
    url = settings.database_url or (running.database_url if running and running.up_alive() else None)
    try:
        if url is not None:
            migrate(url)
        else:
            with EmbeddedPostgres(settings.state_dir / "postgres", start_timeout_s=settings.startup_timeout_s) as pg:
                migrate(pg.url)
        if args.provision:
            _provision(settings.nats_url, args.timeout)
    except (StartupError, EmbeddedError) as err:
        print(err, file=sys.stderr)
        return 1
    return 0


def _provision(nats_url: str, timeout_s: float) -> None:
    """The JetStream streams, each with LIKENESS_STREAM_REPLICAS copies (3 on a 3-node cluster)."""
    from services.launcher.supervisor import StartupError
    from services.runtime.bus import provision
    from services.runtime.settings import RuntimeSettings

    replicas = RuntimeSettings(nats_url=nats_url).stream_replicas
    try:
        asyncio.run(asyncio.wait_for(provision(nats_url, timeout_s=min(timeout_s, 30.0), replicas=replicas),
                                     timeout_s))
    except Exception as err:  # noqa: BLE001 — any failure here fails the release's Job, reported as such
        raise StartupError(f"JetStream provisioning failed on {nats_url}: {err!r}") from err
    print(f"JetStream streams provisioned on {nats_url} ({replicas} replica(s) each)")


def _wait_for_schema(settings: LauncherSettings, timeout_s: float) -> int:
    """A pod's init step: wait, changing nothing, until LIKENESS_DATABASE_URL is at this image's heads."""
    from services.launcher.migrations import wait_for_schema

    if settings.database_url is None:
        print("--wait needs LIKENESS_DATABASE_URL (the database the migration Job migrates)", file=sys.stderr)
        return 2
    status = wait_for_schema(settings.database_url, timeout_s=timeout_s)
    if status.unknown:
        print(f"the database is at {sorted(status.unknown)}, newer than this image knows: going on", file=sys.stderr)
    if not status.ready:
        print(f"the database still lacks {sorted(status.pending)} after {timeout_s:.0f}s: has this release's "
              "migration Job (`likeness migrate`) run?", file=sys.stderr)
        return 1
    return 0


def cmd_schemas(_settings: LauncherSettings, args: argparse.Namespace) -> int:
    """Write a JSON Schema file per message type (and the envelope), and the bus's asyncapi.json, into --out."""
    from contracts.asyncapi import asyncapi_document
    from contracts.schemas import export_schemas

    written = export_schemas(Path(args.out))
    document = Path(args.out) / "asyncapi.json"
    document.write_text(json.dumps(asyncapi_document(), indent=2) + "\n", encoding="utf-8")
    print(f"{len(written)} schemas and {document.name} written to {args.out}")
    return 0


def cmd_edit(settings: LauncherSettings, args: argparse.Namespace) -> int:
    """Submit a picture request for a character (id or photo path) and follow the chain live."""
    from services.launcher.chain_commands import edit, run

    api_key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if api_key:
        from services.launcher.remote import edit_via_gateway

        return run(edit_via_gateway(_gateway_url(settings, args.gateway), api_key, args.character, args.request,
                                    Path(args.out), args.timeout))
    return run(edit(_runtime_settings(settings), args.character, args.request, Path(args.out), args.timeout))


def _gateway_url(settings: LauncherSettings, given: str | None) -> str:
    """--gateway, else LIKENESS_GATEWAY_URL, else the running `up`'s gateway, else the port `up` would use."""
    explicit = given or settings.gateway_url
    if explicit:
        return explicit.rstrip("/")
    running = RunInfo.read(settings.state_dir)
    if running is not None and running.up_alive():
        return running.gateway_url
    return f"http://{HOST}:{settings.gateway_port}"


def cmd_audit(settings: LauncherSettings, args: argparse.Namespace) -> int:
    """Print a chain from the event log: every attempt, seed, score and decision."""
    from services.launcher.chain_commands import audit, run

    return run(audit(_runtime_settings(settings), args.chain_id))


def cmd_golden(settings: LauncherSettings, args: argparse.Namespace) -> int:
    """Pin completed chains (`record`, `list`) and render them again to gate a template, model or LoRA change
    (`verify`)."""
    from services.launcher.chain_commands import run
    from services.launcher.golden import list_pins, record, verify
    from services.launcher.golden_compare import Tolerance

    if args.action == "record":
        return run(record(_runtime_settings(settings), args.chain_ids, note=args.note))
    if args.action == "list":
        return run(list_pins(_runtime_settings(settings)))
    try:
        tolerance = Tolerance(max_score_drop=args.max_score_drop, max_distance=args.max_distance)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(verify(_runtime_settings(settings), tolerance, only=args.chain_ids, swaps=args.swap,
                      timeout_s=args.timeout))


def _golden_arguments(sub: argparse.ArgumentParser) -> None:
    actions = sub.add_subparsers(dest="action", required=True, metavar="ACTION")
    record = actions.add_parser("record", help="pin completed chains: every accepted step's parameters, seed, "
                                               "input, image, score and workflow hash, as events in the log")
    record.add_argument("chain_ids", nargs="+", type=uuid.UUID, metavar="CHAIN_ID")
    record.add_argument("--note", help="why these chains are pinned (kept with the pin)")
    actions.add_parser("list", help="the pinned chains: when, how many steps, which templates and models")
    check = actions.add_parser("verify", help="render every pinned step again through the running system and "
                                              "compare; exit 1 when a step regresses past a tolerance")
    check.add_argument("chain_ids", nargs="*", type=uuid.UUID, metavar="CHAIN_ID",
                       help="only these pinned chains (default: every pinned chain)")
    check.add_argument("--max-score-drop", type=float, default=5.0, metavar="POINTS",
                       help="face score points a step may lose against its pin (default: 5)")
    check.add_argument("--max-distance", type=float, default=8.0, metavar="PERCENT",
                       help="image distance a step may move from its pinned picture: mean absolute pixel "
                            "difference at 64x64, 0-100 (default: 8)")
    check.add_argument("--swap", action="append", default=[], metavar="KIND:OLD=NEW",
                       help="render the pins with a new model, template or LoRA name in place of an old one, e.g. "
                            "model:old.safetensors=new.safetensors (repeatable; KIND is model, template or lora)")
    check.add_argument("--timeout", type=float, default=300.0,
                       help="seconds for the whole run; a step without an answer by then is reported (exit 2)")


def cmd_facecheck(_settings: LauncherSettings, args: argparse.Namespace) -> int:
    """Face check tools: `calibrate` fits a recognizer's score mapping on labelled photo pairs."""
    from services.facecheck.calibrate import main as calibrate

    return calibrate(args)


def _runtime_settings(settings: LauncherSettings):
    """URLs of the given servers, else those of the running `up`."""
    from services.runtime.settings import RuntimeSettings

    running = RunInfo.read(settings.state_dir)
    alive = running is not None and running.up_alive()
    nats_url = settings.nats_url or (running.nats_url if alive else None)
    database_url = settings.database_url or (running.database_url if alive else None)
    if nats_url is None or database_url is None:
        print("Likeness is not running: start it with `make up` (or set LIKENESS_NATS_URL and "
              "LIKENESS_DATABASE_URL)", file=sys.stderr)
        raise SystemExit(2)
    return RuntimeSettings(service_name="cli", nats_url=nats_url, database_url=database_url)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="likeness", description="Run and inspect Likeness locally.")
    parser.add_argument("--state-dir", type=Path, help="state directory (default: $LIKENESS_STATE_DIR or .likeness)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Callable[[LauncherSettings, argparse.Namespace], int]] = {
        "up": cmd_up, "down": cmd_down, "status": cmd_status, "migrate": cmd_migrate, "schemas": cmd_schemas,
        "edit": cmd_edit, "audit": cmd_audit, "golden": cmd_golden, "facecheck": cmd_facecheck,
    }
    for name, handler in handlers.items():
        sub = commands.add_parser(name, help=handler.__doc__, description=handler.__doc__)
        sub.set_defaults(handler=handler)
        if name == "schemas":
            sub.add_argument("--out", default="schemas", help="output directory (default: ./schemas)")
        if name == "edit":
            sub.add_argument("--character", required=True, help="character id, or a path to a face photo")
            sub.add_argument("request", help='e.g. "on a beach at sunset, in a red dress --seed 7"')
            sub.add_argument("--out", default="likeness-out",
                             help="a picture file (main.png) or a folder (default: ./likeness-out) for the final image")
            sub.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the chain")
            sub.add_argument("--api-key", help="act as this user through the gateway's HTTP API, with the "
                                               "character's reference photo that user gave it (default: "
                                               "$LIKENESS_API_KEY; prefer it: a command line is visible to others)")
            sub.add_argument("--gateway", metavar="URL",
                             help="the gateway for --api-key (default: $LIKENESS_GATEWAY_URL, else the one "
                                  "`likeness up` runs)")
        if name == "audit":
            sub.add_argument("chain_id", type=uuid.UUID)
        if name == "golden":
            _golden_arguments(sub)
        if name == "facecheck":
            from services.facecheck.calibrate import add_arguments

            tools = sub.add_subparsers(dest="tool", required=True, metavar="TOOL")
            add_arguments(tools.add_parser("calibrate", help="AUC, EER and error rates of the face check on "
                                           "labelled pairs; fit and write its calibration"))
        if name == "migrate":
            sub.add_argument("--wait", action="store_true",
                             help="apply nothing: wait until the database is at this code's migration heads "
                                  "(exit 1 after --timeout); a Kubernetes pod's init step")
            sub.add_argument("--provision", action="store_true",
                             help="after migrating, create or update the JetStream streams on LIKENESS_NATS_URL")
            sub.add_argument("--timeout", type=float, default=300.0, help="seconds for --wait or --provision")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `likeness` script."""
    args = _parser().parse_args(argv)
    settings = LauncherSettings()
    # Only the launcher's own story at INFO; libraries (alembic, httpx) speak up at WARNING.
    configure_logging("launcher", settings.log_format, "WARNING")
    logging.getLogger("likeness").setLevel(logging.INFO)
    if args.state_dir is not None:
        settings.state_dir = args.state_dir
    return args.handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
