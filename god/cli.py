"""God's command line: ``python -m god`` serves; ``python -m god status`` asks a running god."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.live import Live

from god.broker import CAPACITY, DEDUPE_WINDOW_S, LEASE_S, MAX_ATTEMPTS, MAX_PAYLOAD
from god.service import GodOptions, run_god
from god.door import HANDSHAKE_S, IDLE_S, MAX_CONNECTIONS
from god.live import render
from god.monitor import status_text
from shared.cli import (
    AddressOption, AuthkeyFileOption, GiveUpOption, LogJsonOption, LogLevelOption, TlsCaOption,
    TlsCertOption, TlsKeyOption, new_app, run_role,
)
from shared.client import GodClient
from shared.config import (
    client_settings, default_journal_path, format_address, god_settings, hostname,
)
from shared.errors import UsageError
from shared.records import check_queue, check_rate
from shared.log import setup_logging

STATUS_GIVE_UP_S = 5.0  # seconds status keeps trying an unreachable god: someone is waiting

app = new_app()


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    address: Annotated[Optional[str], typer.Option(
        help="HOST:PORT to listen on; port 0 picks a free port. Default: GOD_ADDRESS, else 0.0.0.0:5678.",
        show_default=False,
    )] = None,
    authkey_file: AuthkeyFileOption = None,
    results: Annotated[Optional[Path], typer.Option(help="Append every result to this file as a JSON line.")] = None,
    journal: Annotated[Optional[Path], typer.Option(
        help="Keep tasks and results in this SQLite file, so a restarted god loses nothing. "
        "Default: journal-PORT.sqlite3 in god's state directory.",
    )] = None,
    no_journal: Annotated[bool, typer.Option(
        "--no-journal", help="Keep everything in memory only: a god that stops loses its queue.",
    )] = False,
    capacity: Annotated[int, typer.Option(min=1, help="Tasks waiting before producers are made to wait.")] = CAPACITY,
    lease_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds without a heartbeat before a consumer's tasks are served again.",
    )] = LEASE_S,
    max_attempts: Annotated[int, typer.Option(
        min=1, help="Times a task is served to consumers that die before it is dead-lettered.",
    )] = MAX_ATTEMPTS,
    max_payload: Annotated[int, typer.Option(
        min=1, help="Largest task payload producers may put, in bytes (pickled).",
    )] = MAX_PAYLOAD,
    dedupe_window: Annotated[float, typer.Option(
        min=1, help="Seconds god remembers a producer it no longer hears from, so that a put it sends again is "
        "not run twice (it is a few dozen bytes a producer).",
    )] = DEDUPE_WINDOW_S,
    max_connections: Annotated[int, typer.Option(
        min=1, help="Connections god serves at once; more are turned away.",
    )] = MAX_CONNECTIONS,
    handshake_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds a new connection has to finish the TLS and authkey handshakes.",
    )] = HANDSHAKE_S,
    idle_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds a connection may wait without a request before god closes it.",
    )] = IDLE_S,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_ca: TlsCaOption = None,
    metrics_port: Annotated[Optional[int], typer.Option(
        min=0, max=65535, help="Serve Prometheus metrics at http://HOST:PORT/metrics (HOST: god's own).",
    )] = None,
    rate_limit: Annotated[Optional[list[str]], typer.Option(
        help="QUEUE=N: start at most N tasks a second from QUEUE, across all consumers. Repeatable; "
        "'python -m god limit' changes it while god runs.",
    )] = None,
    quiet: Annotated[bool, typer.Option(help="Do not print results (the results file still gets them).")] = False,
    plain: Annotated[bool, typer.Option(
        help="Plain lines (results, then a summary line a second) instead of the live view. "
        "Always so when the output is not a terminal.",
    )] = False,
    log_level: LogLevelOption = "INFO",
    log_json: LogJsonOption = False,
) -> None:
    """Serve the task and result queues, and print and record results."""
    if ctx.invoked_subcommand is not None:
        return  # god's own options do not apply to a subcommand
    setup_logging("god", level=log_level, json=log_json)

    def body() -> int:
        if journal is not None and no_journal:
            raise UsageError("--journal and --no-journal contradict each other; give one")
        settings = god_settings(address, authkey_file, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca)
        journal_path = None if no_journal else journal or default_journal_path(settings.address[1])
        options = GodOptions(results_path=results, journal_path=journal_path, capacity=capacity, lease_s=lease_timeout,
                             max_attempts=max_attempts, max_payload=max_payload, dedupe_window_s=dedupe_window,
                             quiet=quiet,
                             max_connections=max_connections, handshake_s=handshake_timeout, idle_s=idle_timeout,
                             metrics_port=metrics_port, live=sys.stdout.isatty() and not plain,
                             limits=parse_limits(rate_limit or []))
        return run_god(settings, options)

    run_role("god", body)


def parse_limits(given: list[str]) -> dict[str, float]:
    """``--rate-limit QUEUE=N`` values as {queue: tasks a second}.

    Raises:
        UsageError: naming the value that is not QUEUE=N.
    """
    limits = {}
    for text in given:
        queue, sep, rate = text.partition("=")
        try:
            n = check_rate(float(rate))
            check_queue(queue)
            if not sep or n is None:
                raise ValueError
        except ValueError:
            raise UsageError(f"--rate-limit {text!r}: expected QUEUE=N, a queue name and tasks a second above 0, "
                             "e.g. images=5") from None
        limits[queue] = n
    return limits


def _rate(text: str) -> float | None:
    if text == "off":
        return None
    try:
        return check_rate(float(text))
    except ValueError:
        raise UsageError(f"rate {text!r}: expected tasks a second above 0, or off") from None


@app.command()
def limit(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    rate: Annotated[str, typer.Argument(help="Tasks a second, across all consumers; 'off' for no limit.")],
    address: AddressOption = None,
    authkey_file: AuthkeyFileOption = None,
    give_up_after: GiveUpOption = STATUS_GIVE_UP_S,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_ca: TlsCaOption = None,
    log_level: LogLevelOption = "ERROR",
    log_json: LogJsonOption = False,
) -> None:
    """Change a queue's rate limit while god runs (journaled: it holds across a restart)."""
    setup_logging("god", level=log_level, json=log_json)

    def body() -> int:
        try:
            check_queue(queue)
        except ValueError as e:
            raise UsageError(str(e)) from None
        n = _rate(rate)
        settings = client_settings(address, authkey_file, give_up_after=give_up_after, tls_cert=tls_cert,
                                   tls_key=tls_key, tls_ca=tls_ca)
        client = GodClient(settings, name=f"limit@{hostname()}", role="status")
        try:
            before = client.set_limit(queue, n)
        finally:
            client.close()
        typer.echo(f"queue {queue}: {_limit_text(n)} (was {_limit_text(before)})")
        return 0

    run_role("god", body)


def _limit_text(rate: float | None) -> str:
    return "no rate limit" if rate is None else f"at most {rate:g} tasks a second start"


@app.command()
def status(
    address: AddressOption = None,
    authkey_file: AuthkeyFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
    watch: Annotated[bool, typer.Option(help="Show the live view, refreshed every --interval seconds, until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes with --watch.")] = 2.0,
    give_up_after: GiveUpOption = STATUS_GIVE_UP_S,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_ca: TlsCaOption = None,
    log_level: LogLevelOption = "ERROR",
    log_json: LogJsonOption = False,
) -> None:
    """Print a running god's counts, consumers and producers, once."""
    setup_logging("god", level=log_level, json=log_json)

    def body() -> int:
        settings = client_settings(address, authkey_file, give_up_after=give_up_after, tls_cert=tls_cert,
                                   tls_key=tls_key, tls_ca=tls_ca)
        client = GodClient(settings, name=f"status@{hostname()}", role="status")
        where = format_address(settings.address)
        try:
            if watch:
                return _watch(client, where, interval)
            stats = client.stats()
        finally:
            client.close()
        typer.echo(json.dumps(stats) if as_json else status_text(where, stats))
        return 0

    run_role("god", body)


def _watch(client: GodClient, where: str, interval: float) -> int:
    """The live view of a god elsewhere until Ctrl-C; on a pipe, a block of lines per refresh."""
    stats = client.stats()
    last, last_at = stats["done"] + stats["failed"] + stats["dead"], time.monotonic()
    if not sys.stdout.isatty():
        try:
            while True:
                typer.echo(status_text(where, stats) + "\n")
                sys.stdout.flush()
                time.sleep(interval)
                stats = client.stats()
        except KeyboardInterrupt:
            return 0
    try:
        with Live(render(stats, 0.0, where), refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                stats = client.stats()
                total, now = stats["done"] + stats["failed"] + stats["dead"], time.monotonic()
                live.update(render(stats, (total - last) / (now - last_at), where))
                last, last_at = total, now
    except KeyboardInterrupt:
        return 0
