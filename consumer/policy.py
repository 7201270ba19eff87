"""What a consumer runs: its own task function, the task functions a put or a call may name
(``--allow``), and whether it takes code from producers at all (``--by-value``).

A put names any ``module:function`` and a program's call may carry its function by value, so
a consumer runs what its producers send unless its operator says otherwise. ``--allow`` globs
say which functions by name it runs (its own ``--task`` always); ``--no-by-value`` says it runs
no code a producer sends: no function by value, and payloads, arguments and the values a call
waited for load as data only (shared/data.py: builtin types, no class and no function named),
since unpickling anything else can run code. A task outside the policy fails with a result
that names the rule; the worker goes on.
"""

from __future__ import annotations

import fnmatch
import pickle
from dataclasses import dataclass
from typing import Any

from shared.data import load_data
from shared.errors import ConfigError
from shared.records import describe

EVERYTHING = ("*",)


@dataclass(frozen=True)
class Policy:
    """The consumer's own task function, the functions by name it may run, and whether it takes
    code from producers."""

    task: str
    allow: tuple[str, ...] = EVERYTHING
    by_value: bool = True
    init: str | None = None  # consumer --init: run once in each worker before its first task (module:function)
    capture: bool = True  # consumer --capture: a task's output goes home (consumer/output.py)
    cache_dir: str | None = None  # consumer --cache-dir: the host's cache of large values (None: the default)
    cache_mb: int | None = None  # consumer --cache-size, in MB (None: the default)
    resources: tuple[tuple[str, float], ...] = ()  # consumer --resources, as given (shared/resources.py)

    def shown(self) -> str:
        """What it runs besides its task, for its log (nothing when it is the default)."""
        parts = ([f"; also {','.join(self.allow)}"] if self.allow != EVERYTHING else []) + (
            [" (no code from producers)"] if not self.by_value else [])
        return "".join(parts)

    def refuses(self, name: str, consumer: str) -> str | None:
        """Why a function named name may not run here (None: it may)."""
        if name == self.task or any(fnmatch.fnmatchcase(name, glob) for glob in self.allow):
            return None
        return (f"task function {name!r} is not allowed on consumer {consumer}: it runs {self.task} and what its "
                f"--allow {','.join(self.allow)} matches")

    def by_value_refused(self, what: str, consumer: str) -> str | None:
        """Why code of a producer's (``what``: "function f", say) may not load here (None: it may)."""
        if self.by_value:
            return None
        return f"{what} came pickled, and consumer {consumer} takes no code from producers (--no-by-value)"

    def loads(self, blob: bytes) -> Any:
        """A producer's pickle (arguments, a payload, a value), loaded as this policy allows.

        Raises:
            Exception: what unpickling raises; with --no-by-value, NotData for a pickle that
                names a class or function.
        """
        return pickle.loads(blob) if self.by_value else load_data(blob)

    def loads_arguments(self, blob: bytes) -> Any:
        """A call's pickled arguments, as ``loads``, with the large values they name fetched
        (shared/values.py: from the host's cache, else god)."""
        from consumer.values import loads

        return loads(blob, self.by_value)


def parse_allow(values: list[str] | None) -> tuple[str, ...]:
    """``--allow`` values (each may hold several, comma-separated) as globs of ``module:function``.

    Raises:
        ConfigError: naming a glob that cannot match a function's name.
    """
    if not values:
        return EVERYTHING
    globs = tuple(g.strip() for v in values for g in v.split(","))
    for g in globs:
        if g != "*" and ":" not in g:
            raise ConfigError(f"--allow {g!r}: expected module:function globs, e.g. consumer.tasks:* or mypkg.*:*")
    return globs


def unloadable(consumer: str, by_value: bool) -> Any:
    """What an item that does not load here becomes: the reason, which its task fails with."""
    def why(e: Exception) -> Unloadable:
        if not by_value:
            return Unloadable(f"the task's payload is a pickled object ({describe(e)}), and consumer {consumer} "
                              "loads data only (--no-by-value)")
        return Unloadable(f"the task's payload cannot be loaded on consumer {consumer}: {describe(e)}")
    return why


class Unloadable(Exception):
    """A payload that did not load here: its task fails with this."""
