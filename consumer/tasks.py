"""Task functions that ship with the consumer, and resolving ``module:function`` to a callable.

- ``consumer.tasks:square``: the tutorial's task (the default).
- ``consumer.tasks:file_digest``: size and SHA-256 of a file on a disk every consumer
  mounts; the payload is the path (the tutorial's advice: send the path, not the file).
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any, Protocol

from shared.errors import ConfigError

DEFAULT_TASK = "consumer.tasks:square"
CHUNK = 1 << 20  # bytes read at a time by file_digest


class Retry(Exception):
    """Raise it from a task to have god serve the task again after ``after`` seconds (an HTTP
    429's Retry-After), while the task has retries left (``producer --retries``)."""

    def __init__(self, after: float, why: str = "") -> None:
        super().__init__(f"asked to be tried again in {after:g}s" + (f": {why}" if why else ""))
        self.after = float(after)


class TaskFunction(Protocol):
    """What a consumer runs: one payload in, one picklable value out; raising fails the task."""

    def __call__(self, payload: Any, /) -> Any: ...


def square(n: int) -> str:
    """The tutorial's task: ``square(3411) == "3411 * 3411 = 11634921"``."""
    return f"{n} * {n} = {n * n}"


def file_digest(path: str) -> dict[str, Any]:
    """``{"path", "size", "sha256"}`` of the file at path; a missing or unreadable file fails the task."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"path": path, "size": size, "sha256": digest.hexdigest()}


def resolve_task(spec: str) -> TaskFunction:
    """Import ``module:function`` (the function may be a dotted path, ``mod:Class.method``).

    Raises:
        ConfigError: the spec is malformed, the module does not import, or the name is
            missing or not callable; the message names which.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"--task {spec!r} is not of the form module:function (e.g. {DEFAULT_TASK})")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--task {spec!r}: cannot import module {module_name!r} ({e})") from None
    except Exception as e:  # the module itself raised while importing
        raise ConfigError(
            f"--task {spec!r}: importing {module_name!r} raised {type(e).__name__}: {e}"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"--task {spec!r}: {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise ConfigError(f"--task {spec!r}: {attr_path!r} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]
