"""The worker's task functions: found by name (``module:function``) on first use and kept,
the consumer's own ``--task`` for tasks that name none, and a Caller for the calls of each
function an Executor sent (consumer/callers.py); only those the consumer's policy allows
(consumer/policy.py)."""

from __future__ import annotations

from typing import Any

from consumer.callers import Caller, Loaded
from consumer.policy import Policy, Unloadable
from consumer.tasks import TaskFunction, resolve_task
from shared.initializer import initialized
from shared.calls import is_call
from shared.errors import ConfigError


class Functions:
    """Task functions by name, imported on first use and kept; the consumer's own for None."""

    def __init__(self, policy: Policy, consumer: str) -> None:
        self.consumer = consumer
        self.policy = policy
        self._init = resolve_task(policy.init) if policy.init is not None else None
        self._fns: dict[str | None, TaskFunction | str] = {None: self._guarded(resolve_task(policy.task))}
        self._loaded: Loaded = {}  # the functions of calls, by name or content

    def get(self, name: str | None) -> TaskFunction | str:
        """The function, or why it cannot be had (a message naming it and this consumer)."""
        fn = self._fns.get(name)
        if fn is None:
            assert name is not None
            if is_call(name):
                fn = Caller(name, functions=self.get, loaded=self._loaded, consumer=self.consumer, policy=self.policy)
            else:
                fn = self.policy.refuses(name, self.consumer) or self._resolve(name)
            self._fns[name] = fn
        return fn

    def _resolve(self, name: str) -> TaskFunction | str:
        try:
            return self._guarded(resolve_task(name))
        except ConfigError as e:
            return f"task function {name!r} cannot be used on consumer {self.consumer}: " \
                   f"{str(e).removeprefix(f'--task {name!r}: ')}"

    def _guarded(self, fn: TaskFunction) -> TaskFunction:
        """fn, after the consumer's --init in this worker (shared/initializer.py), failing a
        task whose payload did not load as data (--no-by-value) with why."""
        if self._init is not None:
            fn = initialized(fn, self._init, (), "consumer --init", "--init")
        if self.policy.by_value:
            return fn

        def guarded(payload: Any, /) -> Any:
            if type(payload) is Unloadable:
                raise payload
            return fn(payload)

        return guarded
