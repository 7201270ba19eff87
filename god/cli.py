"""God's command line: ``python -m god`` serves; the commands that ask a running god
(``python -m god status`` and the rest) are in god/operator/commands.py, on the same app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from god.defaults import (
    CAPACITY, DEAD_KEEP, DEDUPE_WINDOW_S, HANDSHAKE_S, IDLE_S, LEASE_S, MAX_ATTEMPTS, MAX_CONNECTIONS, MAX_PAYLOAD,
    RESULTS_PAYLOAD_MAX, WARN_AFTER_S,
)
from god.store.values import MAX_VALUE, MAX_VALUES
from god.operator.commands import app as app  # the one app: serving, and the commands that ask god
from shared.cli import (
    AuthkeyFileOption, LogJsonOption, LogLevelOption, PlainOption, TlsCaOption, TlsCertOption, TlsKeyOption,
    VersionOption, run_role,
)
from shared.config import default_journal_path, god_settings, parse_address
from shared.errors import ConfigError, UsageError
from shared.log import setup_logging
from shared.records import check_queue, check_rate


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
    sync: Annotated[str, typer.Option(
        help="normal: a confirmed put and a recorded result survive god being killed; full: they survive the "
        "machine losing power too (each journal commit and results write synced to disk; slower).",
    )] = "normal",
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
    max_value: Annotated[int, typer.Option(
        min=1, help="Largest value a program may send on its own (a call's argument past 1 MiB), in bytes.",
    )] = MAX_VALUE,
    max_values: Annotated[int, typer.Option(
        min=1, help="Bytes of such values god holds at once (on disk, beside its journal); past it a program "
        "is told to send fewer at once.",
    )] = MAX_VALUES,
    results_payload_max: Annotated[int, typer.Option(
        min=0, help="Characters of a payload's JSON a results line holds; a longer payload is shown as "
        '{"large": KIND, "bytes": SIZE, "sha256": HEX} instead (its value and the producer\'s results are whole).',
    )] = RESULTS_PAYLOAD_MAX,
    dedupe_window: Annotated[float, typer.Option(
        min=1, help="Seconds god remembers a producer it no longer hears from, so that a put it sends again is "
        "not run twice (it is a few dozen bytes a producer).",
    )] = DEDUPE_WINDOW_S,
    dead_keep: Annotated[int, typer.Option(
        min=1, help="Dead letters kept to list, serve again or purge ('python -m god dead'); the oldest go first.",
    )] = DEAD_KEEP,
    warn_after: Annotated[float, typer.Option(
        min=0, help="Warn (once a task) when a consumer has held a task this many seconds: running that long, "
        "or stuck. 0: never.",
    )] = WARN_AFTER_S,
    fit_timeout: Annotated[Optional[float], typer.Option(
        min=0, help="Fail a task that fits no consumer serving its queue (it needs more resources than any has: "
        "'fits nowhere' in god task and status) for this many seconds. Default: it waits for one that fits.",
    )] = None,
    max_connections: Annotated[int, typer.Option(
        min=1, help="Clients (connections through their handshakes) god serves at once; more are turned away.",
    )] = MAX_CONNECTIONS,
    handshake_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds a new connection has, from connecting, to finish the TLS and authkey handshakes.",
    )] = HANDSHAKE_S,
    idle_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds a connection may wait without a request before god closes it.",
    )] = IDLE_S,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_ca: TlsCaOption = None,
    insecure_plain_tcp: PlainOption = False,
    metrics_port: Annotated[Optional[int], typer.Option(
        min=0, max=65535, help="Serve Prometheus metrics at http://HOST:PORT/metrics (HOST: god's own).",
    )] = None,
    http: Annotated[Optional[str], typer.Option(
        help="Serve the dashboard, its JSON API and /metrics at [HOST:]PORT (HOST: 127.0.0.1 unless given). "
        "God prints the login address; 'python -m god url' prints it again.",
    )] = None,
    keys: Annotated[Optional[Path], typer.Option(
        help="A table of principals (JSON, 0600): each a name, its key, its roles (producer, consumer, "
        "operator, viewer) and queues; a client is who its key says, and may call what its roles allow. "
        "Default: the one key is every role.",
    )] = None,
    http_name: Annotated[Optional[list[str]], typer.Option(
        help="A host name the dashboard is reached by besides god's own (a proxy's, a DNS alias); "
        "requests for any other name get 421. Repeatable.",
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
    version: VersionOption = False,
) -> None:
    """Serve the task and result queues, and print and record results."""
    if ctx.invoked_subcommand is not None:
        return  # god's own options do not apply to a subcommand
    setup_logging("god", level=log_level, json=log_json)

    def body() -> int:
        from god.service import GodOptions, run_god  # the server: only when serving

        if journal is not None and no_journal:
            raise UsageError("--journal and --no-journal contradict each other; give one")
        if sync not in ("normal", "full"):
            raise UsageError(f"--sync {sync!r}: expected normal or full")
        if sync == "full" and no_journal:
            raise UsageError("--sync full keeps the journal on disk; it cannot go with --no-journal")
        settings = god_settings(address, authkey_file, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca,
                                insecure_plain_tcp=insecure_plain_tcp)
        journal_path = None if no_journal else journal or default_journal_path(settings.address[1])
        options = GodOptions(results_path=results, journal_path=journal_path, capacity=capacity, lease_s=lease_timeout,
                             max_attempts=max_attempts, max_payload=max_payload, max_value=max_value, max_values=max_values,
                             results_payload_max=results_payload_max,
                             dedupe_window_s=dedupe_window,
                             dead_keep=dead_keep, warn_after_s=warn_after or None, sync_full=sync == "full",
                             fit_timeout_s=fit_timeout,
                             http=http_address(http) if http is not None else None,
                             http_names=tuple(http_name or ()), keys_path=keys,
                             quiet=quiet,
                             max_connections=max_connections, handshake_s=handshake_timeout, idle_s=idle_timeout,
                             metrics_port=metrics_port, live=sys.stdout.isatty() and not plain,
                             limits=parse_limits(rate_limit or []))
        return run_god(settings, options)

    run_role("god", body)


def http_address(text: str) -> tuple[str, int]:
    """``--http [HOST:]PORT``: the host defaults to loopback (the dashboard reaches beyond the
    authkey's holders only when told to)."""
    if text.strip().isdigit():
        text = f"127.0.0.1:{text.strip()}"
    elif ":" not in text:
        raise UsageError(f"--http {text!r}: give [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080")
    try:
        return parse_address(text, default_host="127.0.0.1")
    except ConfigError as e:
        raise UsageError(f"--http: {e}") from None


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
