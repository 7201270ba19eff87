"""The producer's command line: parse, validate, set up logging, run."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from types import FrameType
from pathlib import Path
from typing import Annotated, Optional

import typer

from producer.producer import Producer
from producer.put_progress import PutProgress
from producer.sources import Batch, json_lines, random_rounds
from shared import exitcodes
from shared.cli import (
    AddressOption, AuthkeyFileOption, ConnectionOption, GiveUpOption, LogJsonOption, LogLevelOption, PlainOption,
    TlsCaOption, TlsCertOption, TlsKeyOption, VersionOption, new_app,
)
from shared.config import GIVE_UP_AFTER_S, client_settings
from shared.errors import ConfigError, GodError, Interrupted, UsageError
from shared.records import DEFAULT_QUEUE, MAX_BACKOFF_S
from shared.log import count, logger, setup_logging

BATCH = 1000  # tasks per put when reading a file

app = new_app()


class _Signals:
    """First SIGINT/SIGTERM: stop after the batch in hand is confirmed. Second: stop now."""

    def __init__(self) -> None:
        self.count = 0
        self.name = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.name = signal.Signals(signum).name
        if self.count > 1:
            raise KeyboardInterrupt

    def requested(self) -> bool:
        return self.count > 0


def _sleep(seconds: float, stop: _Signals) -> None:
    end = time.monotonic() + seconds
    while not stop.requested() and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))


def _batches(source: str | None, rounds: int | None, per_round: int) -> tuple[Iterator[Batch], str]:
    if source is None:
        return random_rounds(rounds, per_round), "round"
    if source == "-":
        return json_lines(sys.stdin, name="stdin", batch_size=BATCH), "batch"
    try:
        f = open(source, encoding="utf-8")  # closed at exit; the producer reads it to the end
    except OSError as e:
        raise ConfigError(f"--from {source}: cannot read it ({e.strerror})") from None
    return json_lines(f, name=source, batch_size=BATCH), "batch"


def _total(source: str | None, rounds: int | None) -> float | None:
    """What the progress bar counts up to: rounds, or the input file's size (None: unknown)."""
    if source is None:
        return rounds
    if source == "-":
        return None
    try:
        return float(os.path.getsize(source))
    except OSError:
        return None


@app.command()
def main(
    address: AddressOption = None,
    authkey_file: AuthkeyFileOption = None,
    rounds: Annotated[Optional[int], typer.Option(min=1, help="Rounds of random integers. Default: until stopped.")] = None,
    per_round: Annotated[int, typer.Option(min=1, help="Random integers (0..999) per round.")] = 10,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between rounds.")] = 3.0,
    from_: Annotated[Optional[str], typer.Option(
        "--from", help="Put one task per JSON line of this file ('-' for stdin) instead of random rounds.",
    )] = None,
    queue: Annotated[str, typer.Option(help="The queue the tasks go on.")] = DEFAULT_QUEUE,
    task: Annotated[Optional[str], typer.Option(
        help="The task function, module:function, that runs these tasks on whichever consumer takes them. "
        "Default: each consumer's own --task.",
    )] = None,
    priority: Annotated[int, typer.Option(help="0 to 9: higher goes first on its queue.")] = 0,
    retries: Annotated[int, typer.Option(
        help="Times a task whose function raises is served again (a worker that dies is --max-attempts, at god).",
    )] = 0,
    retry_backoff: Annotated[float, typer.Option(
        help="Seconds before the first retry; each next one waits twice as long (with jitter).",
    )] = 1.0,
    retry_max_backoff: Annotated[float, typer.Option(help="The longest wait before a retry, in seconds.")] = MAX_BACKOFF_S,
    retry_on: Annotated[Optional[str], typer.Option(
        help="Retry only these exceptions: class names, comma-separated (e.g. TimeoutError,ConnectionError). "
        "Default: any.",
    )] = None,
    delay: Annotated[Optional[float], typer.Option(
        help="Seconds god holds the tasks before serving them (journaled: across a restart too).",
    )] = None,
    after: Annotated[Optional[str], typer.Option(
        help="Task ids, comma-separated (as god task and put print them): god serves these tasks once each of "
        "those has a result, and fails them if one failed. Their payloads are as put.",
    )] = None,
    resources: Annotated[Optional[str], typer.Option(
        help="What each task needs of a consumer, e.g. gpu=1,mem=30G (consumer --resources says what it has): "
        "god gives it only to a consumer with that free.",
    )] = None,
    wait: Annotated[bool, typer.Option(
        help="Then wait for the results of these tasks and print them; exit 1 if any failed.",
    )] = False,
    results: Annotated[Optional[Path], typer.Option(
        help="With --wait: write the results to this file as JSON lines instead of printing them.",
    )] = None,
    give_up_after: GiveUpOption = GIVE_UP_AFTER_S,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_ca: TlsCaOption = None,
    connection: ConnectionOption = None,
    insecure_plain_tcp: PlainOption = False,
    log_level: LogLevelOption = "INFO",
    log_json: LogJsonOption = False,
    version: VersionOption = False,
) -> None:
    """Put tasks on god: rounds of random integers like the tutorial, or JSON lines."""
    setup_logging("producer", level=log_level, json=log_json)
    log = logger.bind(role="producer")
    stop = _Signals()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    producer: Producer | None = None

    def body() -> None:
        nonlocal producer
        try:
            settings = client_settings(address, authkey_file, give_up_after=give_up_after, tls_cert=tls_cert,
                                       tls_key=tls_key, tls_ca=tls_ca, connection=connection,
                                       insecure_plain_tcp=insecure_plain_tcp)
            batches, unit = _batches(from_, rounds, per_round)
            if results is not None and not wait:
                raise UsageError("--results needs --wait (god's own --results records every result)")
            producer = Producer(settings, should_stop=stop.requested, results=wait, queue=queue, task=task,
                                priority=priority, retries=retries, retry_backoff=retry_backoff,
                                retry_max_backoff=retry_max_backoff,
                                retry_on=tuple(n.strip() for n in retry_on.split(",")) if retry_on is not None else None,
                                delay=delay, after=_ids(after), resources=resources)
            producer.connect()
            for tid in producer.options.after or ():  # one that god never had is named now, not in a result
                try:
                    producer.task(tid)
                except ValueError as e:
                    raise ConfigError(f"--after: {e}") from None
            with PutProgress(total=_total(from_, rounds), what="rounds" if unit == "round" else "the file") as bar:
                for n, batch in enumerate(batches, 1):
                    # A file's batches travel several at a time (one per round trip is slow far
                    # from god); each round waits for its confirmation, as the tutorial's do.
                    producer.put_many(batch.payloads, batch.where, wait=unit == "round")
                    bar.advance(len(batch.payloads), batch.size if unit == "batch" else 1)
                    total = f"/{rounds}" if unit == "round" and rounds else ""
                    log.info("{} {}{}: put {} ({} in all)", unit, n, total, count(len(batch.payloads), "task"),
                             producer.accepted)
                    if stop.requested():
                        break
                    if unit == "round" and (rounds is None or n < rounds):
                        _sleep(interval, stop)
                    if stop.requested():
                        break
                producer.flush()  # every batch sent is confirmed before we say so, or stop
        except KeyboardInterrupt:
            log.error("stopped at once; {} put", count(producer.accepted if producer else 0, "task"))
            raise typer.Exit(exitcodes.INTERRUPTED) from None
        except Interrupted as e:
            log.error("{}; {} put", e, count(producer.accepted if producer else 0, "task"))
            raise typer.Exit(e.exit_code) from None
        except GodError as e:
            if isinstance(e, ConfigError) and producer is not None:
                try:  # bad input: the batches sent before it are put, and confirmed, before we exit
                    producer.flush()
                except GodError:
                    pass
            log.error("{}{}", e, f" ({count(producer.accepted, 'task')} put before it)" if producer and producer.accepted else "")
            raise typer.Exit(e.exit_code) from None
        if stop.requested():  # stopped before the end of its tasks: not "done", and not a success
            log.warning("stopped by {}: god accepted {} (each one sent is confirmed); the rest was not put",
                        stop.name, count(producer.accepted, "task"))
            raise typer.Exit(exitcodes.INTERRUPTED)
        log.info("done: god accepted {}", "the 1 task" if producer.accepted == 1 else f"all {producer.accepted} tasks")
        if not wait:
            raise typer.Exit(exitcodes.OK)
        try:
            failed = _wait_for_results(producer, results)
        except (Interrupted, KeyboardInterrupt) as e:
            log.error("stopped while waiting: {} outstanding", count(len(producer.waiting), "result"))
            raise typer.Exit(exitcodes.INTERRUPTED if isinstance(e, KeyboardInterrupt) else e.exit_code) from None
        except GodError as e:
            log.error("{} ({} outstanding)", e, count(len(producer.waiting), "result"))
            raise typer.Exit(e.exit_code) from None
        lost = len(producer.lost_in_restart)
        if failed or lost:
            log.error("{} of {} failed{}", failed, count(producer.accepted, "task"),
                      f"; {lost} finished before god restarted: see god's results file" if lost else "")
            raise typer.Exit(exitcodes.FAILED)
        log.info("{} succeeded", "the 1 task" if producer.accepted == 1 else f"all {producer.accepted} tasks")
        raise typer.Exit(exitcodes.OK)


    try:
        body()
    finally:  # god stops listing a producer that said goodbye
        if producer is not None:
            producer.close()

def _ids(text: str | None) -> tuple[str, ...] | None:
    """--after's ids."""
    if text is None:
        return None
    ids = tuple(t.strip() for t in text.split(",") if t.strip())
    if not ids:
        raise UsageError("--after needs task ids (PRODUCER/SEQ, comma-separated)")
    return ids


def _wait_for_results(producer: Producer, path: Path | None) -> int:
    """Print (or write to path) each result of the producer's tasks as it comes; returns the failures."""
    failed = 0
    try:
        out = open(path, "a", encoding="utf-8") if path is not None else None
    except OSError as e:
        raise ConfigError(f"--results {path}: cannot write it ({e.strerror})") from None
    try:
        for r in producer.results():
            failed += not r.ok
            if out is not None:
                out.write(r.to_json() + "\n")
                out.flush()
            else:
                typer.echo(r.line())
    finally:
        if out is not None:
            out.close()
    return failed
