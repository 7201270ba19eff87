"""A task's output on the wire, and ``report``, which a task calls to say how far it is.

A worker sends what its tasks wrote as items: (producer, seq, chunks, progress). ``chunks``
are (stream, text) in the order written, ``stream`` one of ``STREAMS`` ("note": a line the
worker adds, such as how many lines it dropped), ``text`` one or more whole lines, each
ending with a newline. ``progress`` is the last (done, total) the task reported, or None.
God keeps the last part of each task's items and hands them to the program that owns the
task (god/store/outputs.py); the program shows them (producer/output.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

#: What a task wrote, as a worker sends it: (producer, seq, chunks, progress).
Item = tuple[str, int, list[tuple[str, str]], "tuple[float, float | None] | None"]
O_PRODUCER: Final = 0
O_SEQ: Final = 1
O_CHUNKS: Final = 2
O_PROGRESS: Final = 3
#: A task's lines as god hands them to the program that owns it: (seq, consumer, chunks, progress).
Posted = tuple[int, str, list[tuple[str, str]], "tuple[float, float | None] | None"]
STREAMS = ("out", "err", "note")
#: Characters of one line kept (the rest is cut, and the line says how much).
LINE_MAX = 4096
#: Bytes of output one call carries at most (the rest goes in the next).
CALL_MAX = 1 << 20

_reporter: Callable[[float, float | None], bool] | None = None


def report(done: float, total: float | None = None) -> None:
    """Inside a task: how far it is (``done`` of ``total``, or ``done`` alone, a count). The
    program that submitted it shows it in its progress line, and god's dashboard and ``god
    task ID`` in the task's view. Outside a consumer's task it does nothing.

    Raises:
        ValueError: done or total not a finite number (total above 0).
    """
    if not _finite(done) or (total is not None and (not _finite(total) or total <= 0)):
        raise ValueError(f"report({done!r}, {total!r}): done is a number, and total a number above 0 or None")
    if _reporter is not None:
        _reporter(float(done), None if total is None else float(total))


def set_reporter(reporter: Callable[[float, float | None], bool] | None) -> None:
    """Where ``report`` goes in this process (a worker's capture, consumer/output.py)."""
    global _reporter
    _reporter = reporter


def _finite(x: Any) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def check_items(items: Any) -> list[Item]:
    """A worker's output items, as the wire must have them.

    Raises:
        ValueError: not a list of items of that shape.
    """
    if type(items) is not list:
        raise ValueError("output is a list of (producer, seq, chunks, progress)")
    for it in items:
        if type(it) is not tuple or len(it) != 4 or type(it[O_PRODUCER]) is not str or type(it[O_SEQ]) is not int:
            raise ValueError("an output item is (producer, seq, chunks, progress)")
        chunks, progress = it[O_CHUNKS], it[O_PROGRESS]
        if type(chunks) is not list or not all(
                type(c) is tuple and len(c) == 2 and c[0] in STREAMS and type(c[1]) is str for c in chunks):
            raise ValueError("an output item's chunks are a list of (stream, text)")
        if progress is not None and not (type(progress) is tuple and len(progress) == 2 and _finite(progress[0])
                                         and (progress[1] is None or _finite(progress[1]))):
            raise ValueError("an output item's progress is (done, total) or None")
    return items


def size(item: Item) -> int:
    """About how many bytes an item takes."""
    return 64 + sum(len(text) for _, text in item[O_CHUNKS])
