"""Producer: puts tasks on god in batches: the tutorial's random rounds, JSON lines, or your own
program (``connect`` for tasks by name, ``Executor`` for calls as ``concurrent.futures`` makes them)."""

from typing import Any

from producer.producer import Producer, connect

__all__ = ["Executor", "InitializerFailed", "Producer", "RemoteError", "TaskFuture", "completed", "connect",
           "progress", "report", "worker_state"]


def __getattr__(name: str) -> Any:
    # The executor's modules (concurrent.futures and what it brings) load when a program asks
    # for them, not at every start of the command line producer.
    if name in ("Executor", "TaskFuture"):
        from producer import executor

        return getattr(executor, name)
    if name in ("worker_state", "InitializerFailed"):
        from shared import initializer

        return initializer.state if name == "worker_state" else initializer.InitializerFailed
    if name == "progress":
        from producer.progress_line import progress

        return progress
    if name == "report":
        from shared.output import report

        return report
    if name == "completed":
        from producer.aio import completed

        return completed
    if name == "RemoteError":
        from shared.calls import RemoteError

        return RemoteError
    raise AttributeError(f"module 'producer' has no attribute {name!r}")
