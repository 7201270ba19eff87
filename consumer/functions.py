"""The worker's task functions: found by name (``module:function``) on first use and kept,
the consumer's own ``--task`` for tasks that name none, and a Caller for the calls of each
function an Executor sent (consumer/callers.py)."""

from __future__ import annotations

from consumer.callers import Caller, Loaded
from consumer.tasks import TaskFunction, resolve_task
from shared.calls import is_call
from shared.errors import ConfigError


class Functions:
    """Task functions by name, imported on first use and kept; the consumer's own for None."""

    def __init__(self, default: str, consumer: str) -> None:
        self.consumer = consumer
        self._fns: dict[str | None, TaskFunction | str] = {None: resolve_task(default)}
        self._loaded: Loaded = {}  # the functions of calls, by name or content

    def get(self, name: str | None) -> TaskFunction | str:
        """The function, or why it cannot be had (a message naming it and this consumer)."""
        fn = self._fns.get(name)
        if fn is None:
            assert name is not None
            if is_call(name):
                fn = Caller(name, functions=self.get, loaded=self._loaded, consumer=self.consumer)
            else:
                try:
                    fn = resolve_task(name)
                except ConfigError as e:
                    fn = f"task function {name!r} cannot be used on consumer {self.consumer}: " \
                         f"{str(e).removeprefix(f'--task {name!r}: ')}"
            self._fns[name] = fn
        return fn
