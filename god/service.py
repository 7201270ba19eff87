"""God's process: the wings put together, god's loop (record, reap, show), signals, and a clean stop."""

from __future__ import annotations

import atexit
import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from god.defaults import (
    CAPACITY, DEAD_KEEP, DEDUPE_WINDOW_S, FRAME_OVERHEAD, HANDSHAKE_S, IDLE_S, LEASE_S, MAX_ATTEMPTS, MAX_CONNECTIONS,
    MAX_PAYLOAD, RESULTS_PAYLOAD_MAX, WARN_AFTER_S,
)
from god.journal.recorder import Recorder
from god.journal.journal import Journal
from god.operator.history import History
from god.operator.monitor import Monitor
from god.rules.broker import Broker
from god.store.values import MAX_VALUE, MAX_VALUES, ValueStore
from god.transport.api import Api
from god.transport.door import Door
from god.transport.identity import connection_path, write_connection
from god.transport.principals import Table
from god.transport.server import GodServer
from god.transport.waits import Waits
from god.trim import Trimmer
from shared import exitcodes
from shared.config import Settings, Tls, client_address, format_address, loopback
from shared.errors import ConfigError
from shared.log import count, logger
from shared.wakeup import Wakeup

if TYPE_CHECKING:
    from loguru import Logger  # only in loguru's type stubs

SHORT_KEY = 16  # bytes; a shorter authkey on a reachable port draws a warning
TICK_S = 0.2  # seconds between rounds of god's loop when no result arrives (reaping, stop checks)
#: Seconds between reaps (silent consumers, tasks due, ...) while results keep god's loop
#: awake: a reap at each wake held the GIL for 13 us of every single task's 330.
REAP_EVERY_S = 0.1


@dataclass(frozen=True, slots=True)
class GodOptions:
    """God's knobs beyond address and key."""

    results_path: Path | None = None
    journal_path: Path | None = None  # None: no journal, everything in memory only
    capacity: int = CAPACITY
    lease_s: float = LEASE_S
    max_attempts: int = MAX_ATTEMPTS
    max_payload: int = MAX_PAYLOAD
    max_value: int = MAX_VALUE  # bytes of one large value (god/store/values.py) ...
    max_values: int = MAX_VALUES  # ... and of all it holds
    results_payload_max: int = RESULTS_PAYLOAD_MAX
    dedupe_window_s: float = DEDUPE_WINDOW_S
    dead_keep: int = DEAD_KEEP
    warn_after_s: float | None = WARN_AFTER_S
    fit_timeout_s: float | None = None  # a task that fits no consumer this long fails (None: it waits)
    sync_full: bool = False  # every commit and every results write synced to disk (survives a power loss)
    http: tuple[str, int] | None = None  # serve the dashboard, its API and /metrics here
    http_names: tuple[str, ...] = ()  # host names the dashboard answers to besides god's own
    keys_path: Path | None = None  # the table of principals (god --keys); None: the one key, every role
    quiet: bool = False
    max_connections: int = MAX_CONNECTIONS
    handshake_s: float = HANDSHAKE_S
    idle_s: float = IDLE_S
    metrics_port: int | None = None  # serve Prometheus metrics on god's host at this port
    live: bool = False  # the live view in god's terminal, instead of summary lines
    limits: dict[str, float] = field(default_factory=dict)  # queues' rate limits, tasks a second


class _StopFlag:
    """Set by SIGINT/SIGTERM; the handler only flips a bool (nothing else is signal-safe)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name


def _reload(table: Table, door: Door, log: Logger) -> dict[str, Any]:
    """Read the table of principals again; the connections of those removed or changed end.

    Raises:
        ConfigError: the file is not a table god can use (the one in force stays).
    """
    changed = table.reload()
    closed = door.close_principals(changed)
    log.info("keys table {} read again: {} principals; {} removed or changed ({} closed)",
             table.path, len(table.principals), ", ".join(sorted(changed)) or "none",
             f"{closed} connection" + ("" if closed == 1 else "s"))
    return {"principals": len(table.principals), "changed": sorted(changed), "closed": closed}


def _tls_said(settings: Settings, own: Tls | None) -> str:
    if settings.tls is not None:
        return " with TLS"
    if own is not None:
        return f" with TLS beyond this machine (god's own certificate, {own.cert})"
    return ""


def run_god(settings: Settings, options: GodOptions, *, out: TextIO = sys.stdout) -> int:
    """Serve until SIGINT/SIGTERM, printing and recording results; returns the exit code."""
    log = logger.bind(role="god")
    waits = Waits()
    journal = (Journal(options.journal_path, on_commit=waits.changed, sync_full=options.sync_full)
               if options.journal_path is not None else None)
    try:
        return _serve(settings, options, journal, waits, out, log)
    finally:
        if journal is not None:
            journal.close()
        waits.close()


def _values(journal: Journal | None, max_value: int = MAX_VALUE, max_values: int = MAX_VALUES) -> ValueStore:
    """Where large values are kept: beside the journal (its restart keeps them), else in a
    folder of this god's own, emptied at its start and its end."""
    if journal is not None:
        return ValueStore(Path(f"{journal.path}.values"), max_value=max_value, max_values=max_values)
    for left in Path(tempfile.gettempdir()).glob("god-values-*"):  # of gods killed before they could clean up
        try:
            os.kill(int(left.name.rpartition("-")[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(left, ignore_errors=True)
        except (ValueError, OSError):
            pass
    folder = Path(tempfile.gettempdir()) / f"god-values-{os.getpid()}"
    atexit.register(shutil.rmtree, folder, True)
    return ValueStore(folder, fresh=True, max_value=max_value, max_values=max_values)


def _serve(settings: Settings, options: GodOptions, journal: Journal | None, waits: Waits, out: TextIO,
           log: Logger) -> int:
    table = Table(options.keys_path) if options.keys_path is not None else None  # (a bad one: before anything)
    door = Door(max_connections=options.max_connections, handshake_s=options.handshake_s, idle_s=options.idle_s,
                max_frame=options.max_payload + FRAME_OVERHEAD)
    broker = Broker(capacity=options.capacity, lease_s=options.lease_s, max_attempts=options.max_attempts,
                    max_payload=options.max_payload, results_payload_max=options.results_payload_max,
                    journal=journal, on_change=waits.changed, figures=door.figures,
                    dedupe_window_s=options.dedupe_window_s, dead_keep=options.dead_keep,
                    warn_after_s=options.warn_after_s, leased_only=table is not None, fit_timeout_s=options.fit_timeout_s,
                    values=_values(journal, options.max_value, options.max_values))
    recorder = Recorder(broker, results_path=options.results_path, journal=journal, sync_full=options.sync_full)
    history = History()
    monitor = Monitor(broker.figures, out=out, quiet=options.quiet, history=history)
    if journal is None:
        log.info("no journal: tasks and results live in memory only and are lost if god stops")
    else:
        recovered = journal.recover(recorder.results, forget_before=time.time() - options.dedupe_window_s)
        broker.restore(recovered.batches, recovered.upto, recovered.dead, recovered.schedules, recovered.mailboxes,
                       recovered.outcomes)
        for queue, rate in recovered.limits.items():  # set with 'god limit' while the last god ran
            if queue in options.limits:
                log.info("queue {}: --rate-limit {:g} replaces the {:g} set while god last ran", queue,
                         options.limits[queue], rate)
            else:
                broker.controls.set_limit(queue, rate, journal=False)
        for queue in recovered.paused:
            broker.controls.pause(queue, journal=False)
            log.warning("queue {} is paused (since before god restarted): nothing starts from it until "
                        "'python -m god resume {}'", queue, queue)
        journal.start()
        if recovered.pending or recovered.done:
            log.info("journal {}: {} to serve (waiting or running when god last stopped), "
                     "{} already done and not run again{}", journal.path, count(recovered.pending, "task"),
                     count(recovered.done, "task"),
                     f" ({recovered.found_in_file} found in the results file)"
                     if recovered.found_in_file else "")
        else:
            log.info("journal {}: empty, starting fresh", journal.path)
        if options.sync_full:
            log.info("--sync full: every journal commit and results write is synced to disk before it is confirmed")
    for queue, rate in options.limits.items():  # configuration, not journaled: it is given at each start
        broker.controls.set_limit(queue, rate, journal=False)
    api = Api(broker, waits, journal=journal, results=options.results_path)
    server = GodServer(broker, api, waits, settings, door, principals=table)
    if table is not None:
        api.reload_keys_here = lambda: _reload(table, door, log)
    address = server.start()
    metrics = web = None  # bound before god says it listens: scripts wait for that line as "god is up"
    # the HTTP servers' modules (http.server, email, ...) only when asked for: a third of god's start
    if options.metrics_port is not None:
        from god.operator.metrics import MetricsServer

        metrics = MetricsServer(address[0], options.metrics_port, lambda: (broker.figures.stats(), monitor.rate))
    if options.http is not None:
        from god.operator.web import Web, web_context

        web = Web(*options.http, api=api, waits=waits, principals=server.principals,
                  figures=lambda: (broker.figures.stats(), monitor.rate), history=history,
                  tls=web_context(settings.tls) if settings.tls is not None else None, names=options.http_names)
        api.dashboard = web.base
    # Every thread god runs is up before it says it listens (what scripts and tests wait for).
    stop = _StopFlag()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every thread's stack, to stderr
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    hup = [False]  # SIGHUP: read the table of principals again (the handler only flips it)
    if table is not None:
        signal.signal(signal.SIGHUP, lambda signum, frame: hup.__setitem__(0, True))
    wakeup = Wakeup()
    wakeup.call_on_signal(broker.results_ready.set)  # the loop below sees a stop at once, not at its tick
    if server.own_tls is not None and server.own_tls.cert is not None:
        # Said before 'listening on' (what scripts wait for), so that it is there when they look.
        path = connection_path(address[1])
        write_connection(path, client_address(address), settings.authkey, server.own_tls.cert)
        out.write(f"connection file: {path} (other hosts: copy it there, mode 600, and set GOD_CONNECTION to it)\n")
    out.write(f"listening on {format_address(address)} (clients use GOD_ADDRESS={client_address(address)})\n")
    out.flush()
    log.info("listening on {}{}; authkey from {}", format_address(address), _tls_said(settings, server.own_tls),
             settings.authkey_source)
    if settings.plain and not loopback(address[0]):
        log.warning("--insecure-plain-tcp: god speaks plain TCP beyond this machine: whoever is on the path can "
                    "read every task and result, and whoever a client reaches in god's place can run code on god")
    if len(settings.authkey) < SHORT_KEY and not loopback(address[0]):
        log.warning("the authkey is only {} bytes and god listens beyond this machine: a short key can be "
                    "guessed; use 32 random bytes (python3 -c 'import secrets; print(secrets.token_hex(32))')",
                    len(settings.authkey))
    if options.results_path is not None:
        log.info("appending results to {}", options.results_path)
    if metrics is not None:
        log.info("metrics on http://{}/metrics", format_address((address[0], metrics.port)))
    if web is not None:
        from god.operator.web import login_url

        # The login address (its token opens the dashboard) only to a person at a terminal: a
        # log keeps what it is given (journald), and with a table each operator has their own.
        if table is None and out.isatty():
            out.write(f"dashboard: {login_url(web.base, settings.authkey)}\n")
        else:
            whose = "an operator's or viewer's key" if table is not None else "the key"
            out.write(f"dashboard: {web.base} (its login address: python -m god url, with {whose})\n")
        out.flush()
        if not web.tls and not loopback(web.address[0]):
            log.warning("the dashboard at {} is plain HTTP beyond this machine: its login token and session cookie "
                        "cross the network readable, and whoever has them can pause, cancel and requeue; give god "
                        "--tls-cert (the dashboard then speaks HTTPS), or bind --http to 127.0.0.1 and tunnel",
                        web.base)

    if options.live:
        monitor.start_live(format_address(address))
    trimmer = Trimmer()
    reaped_at = 0.0
    while not stop.requested:
        kept = recorder.step(TICK_S)  # results kept before anyone is shown them
        now = time.monotonic()
        if now - reaped_at >= REAP_EVERY_S:
            reaped_at = now
            for name, n in broker.reap():
                log.warning("consumer {} lost (no heartbeat for {:.0f}s); {} served again", name, options.lease_s,
                            count(n, "task"))
        monitor.step(kept)
        door.close_overdue()
        trimmer.step()
        if hup[0] and table is not None:
            hup[0] = False
            try:
                _reload(table, door, log)
            except ConfigError as e:
                log.error("SIGHUP: {}; the table in force stays", e)
    wakeup.close()
    log.info("stopping on {}", stop.signal_name)
    if metrics is not None:
        metrics.close()
    if web is not None:
        web.close()
    monitor.close(recorder.close())
    if recorder.unwritten:
        log.error("{} could not be written to {} (they were printed above{})",
                  count(recorder.unwritten, "result"), options.results_path,
                  "; their tasks are served again when god next starts on this journal" if journal else "")
        return exitcodes.FAILED
    return exitcodes.OK
