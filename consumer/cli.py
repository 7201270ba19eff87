"""The consumer's command line: parse, validate, set up logging, run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from loguru import logger

from consumer.consumer import Consumer
from consumer.tasks import DEFAULT_TASK, resolve_task
from shared.config import CLIENT_HOST, DEFAULT_PORT, GIVE_UP_AFTER_S, load_settings
from shared.errors import GodError
from shared.log import setup_logging

PREFETCH = 100  # most tasks queued at one worker; fewer when tasks are slow

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def main(
    address: Annotated[str, typer.Option(envvar="GOD_ADDRESS", help="God's HOST:PORT.")] = f"{CLIENT_HOST}:{DEFAULT_PORT}",
    authkey_file: Annotated[Optional[Path], typer.Option(
        envvar="GOD_AUTHKEY_FILE", help="File holding the authkey. Default: GOD_AUTHKEY, else god's key file here.",
    )] = None,
    task: Annotated[str, typer.Option(help="The task function, module:function.")] = DEFAULT_TASK,
    processes: Annotated[int, typer.Option(min=1, help="Worker processes. Default: the CPU count.")] = os.cpu_count() or 1,
    prefetch: Annotated[int, typer.Option(
        min=1, help="Most tasks queued at each worker (fewer when tasks are slow).",
    )] = PREFETCH,
    burst: Annotated[bool, typer.Option(help="Exit 0 once the queue is empty.")] = False,
    give_up_after: Annotated[float, typer.Option(help="Seconds to keep retrying an unreachable god.")] = GIVE_UP_AFTER_S,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_json: Annotated[bool, typer.Option(help="Write logs as JSON lines.")] = False,
) -> None:
    """Take tasks from god, run them in worker processes, send the results back."""
    setup_logging("consumer", level=log_level, json=log_json)
    try:
        settings = load_settings(address, authkey_file, default_host=CLIENT_HOST, give_up_after=give_up_after)
        resolve_task(task)  # fail here, before connecting or forking, if it does not import
        consumer = Consumer(settings, task_spec=task, processes=processes, prefetch=prefetch, burst=burst,
                            log_level=log_level, log_json=log_json)
        code = consumer.run()
    except GodError as e:
        logger.bind(role="consumer").error(str(e))
        raise typer.Exit(e.exit_code) from None
    raise typer.Exit(code)
