"""The commands that ask a running god: ``python -m god status``, ``limit``, ``dead``, ``failed``,
``requeue``, ``purge``. God's own command (serving) is in god/cli.py, on the same app.

Each is a function of a way to reach god (``ask``) and its own options; ``@operator`` gives it
the options every such command takes (address, key, TLS, how long to try, logging), which
``ask`` uses, so a command checks what it was given before it connects.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated, Any, Optional

import typer

from god.operator.keys import keys_app
from god.operator.lines import status_text
from god.store.schedules import check_name, parse_cron
from shared.cli import (
    AddressOption, AuthkeyFileOption, ConnectionOption, GiveUpOption, LogJsonOption, LogLevelOption, PlainOption,
    TlsCaOption, TlsCertOption, TlsKeyOption, new_app, run_role,
)
from shared.client import GodClient
from shared.config import client_settings, format_address, hostname
from shared.errors import GodError, UsageError
from shared.log import count, setup_logging
from shared.records import check_queue, check_rate, split_id

ASK_GIVE_UP_S = 5.0  # seconds a command keeps trying an unreachable god: someone is waiting

app = new_app()

#: Opens a client of god for one command: (the client, god's address as given).
Ask = Callable[[], AbstractContextManager[tuple[GodClient, str]]]


def _reaching_god(
    address: AddressOption = None,
    authkey_file: AuthkeyFileOption = None,
    give_up_after: GiveUpOption = ASK_GIVE_UP_S,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_ca: TlsCaOption = None,
    connection: ConnectionOption = None,
    insecure_plain_tcp: PlainOption = False,
    log_level: LogLevelOption = "ERROR",
    log_json: LogJsonOption = False,
) -> None:
    """The options every command that asks god takes (their declarations, for ``operator``)."""


_COMMON = list(inspect.signature(_reaching_god, eval_str=True).parameters.values())


def operator(fn: Callable[..., int]) -> Callable[..., None]:
    """Register fn(ask, OPTIONS...) -> exit code as a command that takes the common options too."""
    return _register(fn, app, fn.__name__)


def _register(fn: Callable[..., int], on: typer.Typer, name: str) -> Callable[..., None]:
    """Register fn as command NAME of app ``on`` (see ``operator``)."""
    own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
    names = [p.name for p in _COMMON]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        common = {name: kwargs.pop(name) for name in names}  # client_settings' own names, and the log's
        setup_logging("god", level=common.pop("log_level"), json=common.pop("log_json"))

        @contextmanager
        def ask() -> Iterator[tuple[GodClient, str]]:
            s = client_settings(**common)
            client = GodClient(s, name=f"{fn.__name__}@{hostname()}", role="status")
            try:
                yield client, format_address(s.address)
            except ValueError as e:  # god refused what was asked (an id or a consumer it does not know)
                raise GodError(f"god refused: {e}") from None
            finally:
                client.close()

        run_role("god", lambda: fn(ask, **kwargs))

    command.__signature__ = inspect.Signature(own + _COMMON)  # type: ignore[attr-defined]
    del command.__wrapped__  # typer reads the signature above, not fn's
    on.command(name=name)(command)
    return command


def _queue_name(queue: str | None) -> None:
    if queue is not None:
        try:
            check_queue(queue)
        except ValueError as e:
            raise UsageError(str(e)) from None


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


QueueOption = Annotated[Optional[str], typer.Option(help="Only this queue's.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object a line.")]


@operator
def status(
    ask: Ask,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
    watch: Annotated[bool, typer.Option(help="Show the live view, refreshed every --interval seconds, until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes with --watch.")] = 2.0,
) -> int:
    """Print a running god's counts, consumers and producers, once."""
    with ask() as (client, where):
        if watch:
            return _watch(client, where, interval)
        stats = client.stats()
    typer.echo(json.dumps(stats) if as_json else status_text(where, stats))
    return 0


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
    from rich.live import Live  # rich, for a terminal only

    from god.operator.live import render

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


def _rate(text: str) -> float | None:
    if text == "off":
        return None
    try:
        return check_rate(float(text))
    except ValueError:
        raise UsageError(f"rate {text!r}: expected tasks a second above 0, or off") from None


def _limit_text(rate: float | None) -> str:
    return "no rate limit" if rate is None else f"at most {rate:g} tasks a second start"


@operator
def limit(
    ask: Ask,
    queue: Annotated[Optional[str], typer.Argument(help="The queue. Default: list every queue's limit.")] = None,
    rate: Annotated[Optional[str], typer.Argument(
        help="Tasks a second, across all consumers; 'off' for no limit. Default: print the queue's limit.",
    )] = None,
    as_json: JsonOption = False,
) -> int:
    """Change a queue's rate limit while god runs (journaled: it holds across a restart); with
    a queue alone, print its limit; with nothing, list every queue's."""
    _queue_name(queue)
    if queue is not None and rate is not None:  # (a rate comes only after a queue)
        n = _rate(rate)
        with ask() as (client, _):
            before = client.set_limit(queue, n)
        typer.echo(json.dumps({"queue": queue, "rate_limit": n, "was": before}) if as_json else
                   f"queue {queue}: {_limit_text(n)} (was {_limit_text(before)})")
        return 0
    with ask() as (client, _):
        queues = client.stats()["queues"]
    limits = {name: queues[name]["rate_limit"] if name in queues else None
              for name in ([queue] if queue is not None else sorted(queues))}
    for name, current in limits.items():
        typer.echo(json.dumps({"queue": name, "rate_limit": current}) if as_json else
                   f"queue {name}: {_limit_text(current)}")
    if not as_json and queue is None:
        limited = sum(r is not None for r in limits.values())
        typer.echo(f"{count(len(limits), 'queue')}, {limited} with a rate limit", err=True)
    return 0


def _listing(ask: Ask, what: str, queue: str | None, as_json: bool) -> int:
    """Print god's dead letters or failed results, a line each (as JSON with as_json), then how many."""
    _queue_name(queue)
    with ask() as (client, _):
        rows = client.dead(queue) if what == "dead" else client.failed(queue)
    for r in rows:
        typer.echo(json.dumps(r) if as_json else
                   f"{r['id']}  queue {r['queue']}  task {r['task'] or '-'}  {r['shown']}  "
                   f"{count(r['attempts'] or 1, 'attempt')}, {_when(r['time'] or 0)}: "
                   f"{r['reason'] if what == 'dead' else r['error']}")
    if not as_json:
        noun = "dead letter" if what == "dead" else "failed result"
        typer.echo(f"{count(len(rows), noun)}{f' on queue {queue}' if queue else ''}", err=True)
    return 0


@operator
def dead(ask: Ask, queue: QueueOption = None, as_json: JsonOption = False) -> int:
    """List the dead letters god keeps (tasks given up on), oldest first."""
    return _listing(ask, "dead", queue, as_json)


@operator
def failed(ask: Ask, queue: QueueOption = None, as_json: JsonOption = False) -> int:
    """List the last failed results god saw (up to 1,000; the results file has every one), oldest first."""
    return _listing(ask, "failed", queue, as_json)


@operator
def requeue(
    ask: Ask,
    ids: Annotated[Optional[list[str]], typer.Argument(help="Ids of dead letters to serve again.",
                                                        show_default=False)] = None,
    all_dead: Annotated[bool, typer.Option("--dead", help="Every dead letter (of --queue, if given).")] = False,
    queue: QueueOption = None,
) -> int:
    """Serve dead letters again, as new tasks: each one's results line says which it was ("requeued_from")."""
    if bool(ids) == all_dead:
        raise UsageError("give the ids of dead letters, or --dead for all of them (with --queue, a queue's)")
    if ids and queue is not None:
        raise UsageError("--queue goes with --dead; ids name their tasks already")
    _queue_name(queue)
    with ask() as (client, _):
        moved = client.requeue(list(ids) if ids else None, queue)
    for old, new in moved:
        typer.echo(f"{old} -> {new}")
    typer.echo(f"{count(len(moved), 'dead letter')} served again", err=True)
    return 0


@operator
def purge(
    ask: Ask,
    all_dead: Annotated[bool, typer.Option("--dead", help="Drop dead letters (the one kind purge drops).")] = False,
    older_than: Annotated[Optional[float], typer.Option(
        min=0, help="Only those given up more than this many seconds ago.")] = None,
    queue: QueueOption = None,
) -> int:
    """Drop dead letters for good (their results lines stay in the results file)."""
    if not all_dead:
        raise UsageError("say what to drop: --dead (with --queue or --older-than to drop fewer)")
    _queue_name(queue)
    with ask() as (client, _):
        n = client.purge(queue, older_than)
    typer.echo(f"{count(n, 'dead letter')} dropped")
    return 0


@operator
def task(
    ask: Ask,
    tid: Annotated[str, typer.Argument(metavar="ID", help="The task's id, PRODUCER/SEQ.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    output: Annotated[bool, typer.Option(
        "--output", help="Print what the task wrote too (stdout, stderr, logging, warnings): the last part god keeps.",
    )] = False,
) -> int:
    """Where one task is (blocked, waiting, scheduled, running on which consumer, done, failed, dead), and its results line."""
    try:
        split_id(tid)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with ask() as (client, _):
        t = client.task(tid)
    if as_json:
        typer.echo(json.dumps(t))
        return 0
    result = t.get("result")
    state = t["state"]
    if state == "done" and result is not None and not result.get("ok"):
        state = "cancelled" if str(result.get("error")).startswith("cancelled") else "failed"
    where = ", ".join(f"{k} {t[k]}" for k in ("queue", "task", "priority", "attempts", "requeued_from")
                      if t.get(k) is not None)
    extra = f"; {t['reason']}" if t.get("reason") else ""
    extra += f"; due in {t['due_in_s']:.1f}s" if t.get("due_in_s") is not None else ""
    extra += f"; waits for {', '.join(t['on'])}" if t.get("on") else ""
    extra += f"; {t['fits']}" if t.get("fits") else ""
    kept = t.get("output")
    if kept and kept.get("progress"):
        done, total = kept["progress"]
        extra += f"; reported {done:g} of {total:g}" if total is not None else f"; reported {done:g}"
    typer.echo(f"{tid}: {'running on ' + t['consumer'] if state == 'running' and t.get('consumer') else state}"
               f"{' (' + where + ')' if where else ''}{extra}")
    if result is not None:
        typer.echo(json.dumps(result))
    elif state == "done":
        typer.echo("its results line is not in god's results file (god has none, or it was moved)")
    if output:
        typer.echo(shown_output(kept))
    return 0


def shown_output(kept: dict[str, Any] | None) -> str:
    """What god keeps of a task's output, as ``god task ID --output`` prints it."""
    lines = kept.get("lines", []) if kept else []
    if not lines:
        return "no output: it wrote nothing, ran with consumer --no-capture, or god let it go (or restarted)"
    cut = f"; {kept['cut']:,} characters before them let go" if kept and kept.get("cut") else ""
    head = f"output on {kept['consumer']} ({count(len(lines), 'line')}{cut}):" if kept else ""
    marks = {"out": "", "err": "[stderr] ", "note": "[note] "}
    return "\n".join([head, *(f"  {marks.get(stream, '')}{line}" for stream, line in lines)])


@operator
def pause(ask: Ask, queue: Annotated[str, typer.Argument(help="The queue.")]) -> int:
    """Start nothing more from a queue (running tasks finish; puts are still taken); it stays paused across restarts."""
    _queue_name(queue)
    with ask() as (client, _):
        was = client.pause(queue, True)
    typer.echo(f"queue {queue} {'was paused already' if was else 'paused: nothing more starts from it'}")
    return 0


@operator
def resume(ask: Ask, queue: Annotated[str, typer.Argument(help="The queue.")]) -> int:
    """Start tasks from a paused queue again."""
    _queue_name(queue)
    with ask() as (client, _):
        was = client.pause(queue, False)
    typer.echo(f"queue {queue} {'resumed' if was else 'was not paused'}")
    return 0


@operator
def drain(ask: Ask, consumer: Annotated[str, typer.Argument(help="The consumer, as status names it (HOST:PID).")]) -> int:
    """Ask a consumer to finish what it runs, hand back what it holds, and exit 0 (within a heartbeat)."""
    with ask() as (client, _):
        held = client.drain(consumer)
    typer.echo(f"consumer {consumer} asked to drain: it finishes what it runs and hands back the rest "
               f"({count(held, 'task')} held now), then exits")
    return 0


@operator
def cancel(
    ask: Ask,
    ids: Annotated[Optional[list[str]], typer.Argument(help="Ids of tasks to cancel.", show_default=False)] = None,
    queue: Annotated[Optional[str], typer.Option(help="Every task of this queue not done yet.")] = None,
    producer: Annotated[Optional[str], typer.Option(help="Every task of this producer not done yet.")] = None,
) -> int:
    """Cancel tasks: each gets a failed result saying so and never runs; running ones are stopped."""
    if sum(bool(x) for x in (ids, queue, producer)) != 1:
        raise UsageError("say which tasks: their ids, --queue QUEUE or --producer NAME (one of them)")
    _queue_name(queue)
    with ask() as (client, _):
        n = client.cancel(list(ids) if ids else None, queue, producer)
    typer.echo(f"cancelled {count(sum(n.values()), 'task')}: {n['waiting']} waiting, {n['scheduled']} scheduled, "
               f"{n['running']} running (their consumers are told to stop them)")
    return 0


@operator
def url(ask: Ask) -> int:
    """Print the dashboard's login address again (god --http), with the token made from the key."""
    with ask() as (client, _):
        base = client.dashboard_address()
        key = client.settings.authkey
    if base is None:
        raise GodError("god serves no dashboard: start it with --http [HOST:]PORT")
    from god.operator.web import login_url  # the web server's module, for this command only

    typer.echo(login_url(base, key))
    return 0


schedule_app = new_app()
schedule_app.info.help = "Tasks god puts every so often: add, list, remove."
app.add_typer(schedule_app, name="schedule")


def _every_text(s: dict[str, Any]) -> str:
    return f"every {s['every']:g}s" if s["every"] is not None else f"cron '{s['cron']}'"


def _schedule_line(s: dict[str, Any]) -> str:
    return (f"{s['name']}: {_every_text(s)}, queue {s['queue']}, task {s['task'] or '-'}, payload "
            f"{json.dumps(s['payload'])}, next {_when(s['next'])}, {count(s['runs'], 'run')} so far")


def schedule_add(
    ask: Ask,
    name: Annotated[str, typer.Argument(help="The schedule's name ([A-Za-z0-9_.-]); its tasks' ids are schedule-NAME/RUN.")],
    every: Annotated[Optional[float], typer.Option(min=1, help="Put the task every this many seconds.")] = None,
    cron: Annotated[Optional[str], typer.Option(
        help="Put the task at these times, a crontab line's five fields in god's local time: "
        "'MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK', e.g. '*/15 * * * *' or '0 9 * * mon-fri'.")] = None,
    queue: Annotated[str, typer.Option(help="The queue the task goes on.")] = "default",
    task: Annotated[Optional[str], typer.Option(help="The task function, module:function (else the consumer's).")] = None,
    payload: Annotated[str, typer.Option(help="The task's payload, as JSON.")] = "null",
) -> int:
    """Have god put a task every N seconds or at a crontab line's times: once a period, across restarts."""
    try:
        check_name(name)
        _queue_name(queue)
        if (every is None) == (cron is None):
            raise UsageError("say when: --every SECONDS or --cron 'FIELDS' (one of them)")
        if cron is not None:
            parse_cron(cron)
        value = json.loads(payload)
    except ValueError as e:
        raise UsageError(f"--payload {payload!r} is not JSON: {e}" if isinstance(e, json.JSONDecodeError) else str(e)) from None
    if task is not None and ":" not in task:
        raise UsageError(f"--task {task!r}: expected module:function")
    with ask() as (client, _):
        s = client.schedule_add(name, every, cron, queue, task, value)
    typer.echo(f"schedule {_schedule_line(s)}")
    return 0


def schedule_list(ask: Ask, as_json: JsonOption = False) -> int:
    """List god's schedules."""
    with ask() as (client, _):
        schedules = client.schedule_list()
    for s in schedules:
        typer.echo(json.dumps(s) if as_json else _schedule_line(s))
    if not as_json:
        typer.echo(count(len(schedules), "schedule"), err=True)
    return 0


def schedule_remove(ask: Ask, name: Annotated[str, typer.Argument(help="The schedule's name.")]) -> int:
    """Stop a schedule (tasks it put already stay)."""
    with ask() as (client, _):
        s = client.schedule_remove(name)
    typer.echo(f"schedule {s['name']} removed (it ran {count(s['runs'], 'time')})")
    return 0


for _fn, _name in ((schedule_add, "add"), (schedule_list, "list"), (schedule_remove, "remove")):
    _register(_fn, schedule_app, _name)
app.add_typer(keys_app, name="keys")  # (commands on a file, not asking god: god/operator/keys.py)


def keys_reload(ask: Ask) -> int:
    """Have a running god read its table of principals again (as SIGHUP does); the connections of
    principals removed or changed end."""
    with ask() as (client, where):
        r = client.call("reload_keys")
    changed = ", ".join(r["changed"]) or "none"
    typer.echo(f"god at {where} read its table again: {r['principals']} principals; removed or changed: {changed} "
               f"({r['closed']} connection{'' if r['closed'] == 1 else 's'} closed)")
    return 0


_register(keys_reload, keys_app, "reload")
