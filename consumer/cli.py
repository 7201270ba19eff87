"""The consumer's command line: parse, validate, set up logging, run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from consumer.recycle import Recycle
from consumer.consumer import Consumer
from consumer.policy import Policy, parse_allow
from consumer.tasks import DEFAULT_TASK, resolve_task
from consumer.values import CACHE_BYTES
from shared.cli import (
    AddressOption, AuthkeyFileOption, ConnectionOption, GiveUpOption, LogJsonOption, LogLevelOption, PlainOption,
    TlsCaOption, TlsCertOption, TlsKeyOption, VersionOption, new_app, run_role,
)
from shared.config import GIVE_UP_AFTER_S, client_settings
from shared.errors import ConfigError
from shared.log import setup_logging
from shared.records import DEFAULT_QUEUE, check_queue
from shared.resources import parse as parse_resources

PREFETCH = 1000  # most tasks queued at one worker; fewer when tasks are slow (TARGET_QUEUED_S)

app = new_app()


def parse_queues(text: str) -> tuple[str, ...]:
    """``a,b,c`` as queue names, in order.

    Raises:
        ConfigError: naming the name that breaks the rule.
    """
    names = tuple(name.strip() for name in text.split(","))
    try:
        for name in names:
            check_queue(name)
    except ValueError as e:
        raise ConfigError(f"--queues: {e}") from None
    if len(set(names)) != len(names):
        raise ConfigError(f"--queues {text!r} names a queue twice")
    return names


@app.command()
def main(
    address: AddressOption = None,
    authkey_file: AuthkeyFileOption = None,
    task: Annotated[str, typer.Option(help="The task function, module:function.")] = DEFAULT_TASK,
    queues: Annotated[str, typer.Option(
        help="The queues to serve, in order: a queue is served only when those before it have nothing waiting.",
    )] = DEFAULT_QUEUE,
    processes: Annotated[int, typer.Option(min=1, help="Worker processes. Default: the CPU count.")] = os.cpu_count() or 1,
    prefetch: Annotated[int, typer.Option(
        min=1, help="Most tasks queued at each worker: fewer when tasks are slow (about 50 ms of work), more "
        "when god is far (about five round trips of work).",
    )] = PREFETCH,
    concurrency: Annotated[int, typer.Option(
        min=1, help="Tasks each worker process runs at once: plain functions on threads, async def functions "
        "as coroutines on the process's event loop. For tasks that wait (the network, a disk).",
    )] = 1,
    allow: Annotated[Optional[list[str]], typer.Option(
        help="Task functions by name (module:function globs, comma-separated or repeated) that puts and "
        "calls may name: this consumer runs its --task and these. Default: any it can import.",
    )] = None,
    by_value: Annotated[bool, typer.Option(
        help="Take code from producers: functions by value, and payloads and arguments of any pickled type. "
        "--no-by-value: no function by value, and payloads and arguments load as data only (builtin types).",
    )] = True,
    init: Annotated[Optional[str], typer.Option(
        help="A function (module:function) run once in each worker process before its first task, and again "
        "in a worker that replaces it: to load a model or open a connection once. If it raises, that worker's "
        "tasks fail saying so.",
    )] = None,
    capture: Annotated[bool, typer.Option(
        help="Send what a task writes (stdout, stderr, logging, warnings) to god, which keeps its last part "
        "(god task ID --output) and hands it to the program that put the task. --no-capture: it goes to "
        "this consumer's log.",
    )] = True,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Where this host keeps the large values calls name (arguments past 1 MiB), fetched once for all "
        "its consumers' workers. Default: $XDG_CACHE_HOME/god/values (~/.cache/god/values).",
    )] = None,
    cache_size: Annotated[int, typer.Option(
        min=1, help="MB of values that cache keeps; past it, the values used least recently are deleted.",
    )] = CACHE_BYTES >> 20,
    resources: Annotated[Optional[str], typer.Option(
        help="What this consumer has for tasks that say what they need, e.g. gpu=2,mem=64G,licence=1: god "
        "gives it a task only while that is free, counted across its workers. Default: the GPUs found "
        "(CUDA_VISIBLE_DEVICES, else nvidia-smi) and the host's memory; a worker sees only its task's GPUs.",
    )] = None,
    burst: Annotated[bool, typer.Option(help="Exit 0 once the queue is empty.")] = False,
    idle_exit: Annotated[Optional[float], typer.Option(
        min=0.1, help="Exit 0 once no task ran for this many seconds (running tasks finish first, and nothing "
        "held is lost): for consumers started for a backlog (a Slurm job, a systemd unit, by hand).",
    )] = None,
    task_timeout: Annotated[Optional[float], typer.Option(
        min=0.001, help="Stop a task running longer than this many seconds (its worker is replaced); "
        "its result is a failure that says it timed out. Default: no limit.",
    )] = None,
    max_tasks_per_worker: Annotated[Optional[int], typer.Option(
        min=1, help="Replace a worker process after it ran this many tasks (for task code that leaks). "
        "Default: never.",
    )] = None,
    max_worker_memory: Annotated[Optional[float], typer.Option(
        min=1, help="Replace a worker process whose memory (RSS) passed this many MB, once its running tasks "
        "end (looked at between tasks, at least every 64 tiny ones). Default: never.",
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
    """Take tasks from god, run them in worker processes, send the results back."""
    setup_logging("consumer", level=log_level, json=log_json)

    def body() -> int:
        settings = client_settings(address, authkey_file, give_up_after=give_up_after, tls_cert=tls_cert,
                                   tls_key=tls_key, tls_ca=tls_ca, connection=connection,
                                   insecure_plain_tcp=insecure_plain_tcp)
        resolve_task(task)  # fail here, before connecting or forking, if it does not import
        if init is not None:
            resolve_task(init)
        try:
            have = parse_resources(resources) if resources is not None else {}
        except ValueError as e:
            raise ConfigError(f"--resources: {e}") from None
        policy = Policy(task, parse_allow(allow), by_value, init, capture,
                        str(cache_dir) if cache_dir is not None else None, cache_size, tuple(have.items()))
        return Consumer(settings, policy=policy, queues=parse_queues(queues), processes=processes,
                        prefetch=prefetch, concurrency=concurrency, burst=burst, idle_exit=idle_exit,
                        task_timeout=task_timeout, recycle=Recycle(max_tasks_per_worker, max_worker_memory),
                        log_level=log_level, log_json=log_json).run()

    run_role("consumer", body)
