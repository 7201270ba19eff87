"""What tasks wrote (shared/output.py): the last part of each task's, and the lines on their way
to the program that owns the task.

God keeps, per task, its last TASK_KEEP characters and its last reported progress, for ``god
task ID --output`` and the dashboard, also after the program is gone; of all tasks together
ALL_KEEP characters, the tasks written to least recently let go first. A producer that asked
for its tasks' lines in its hello (``"output": true``) gets them, numbered as results are,
and confirmed by its next fetch; up to BOX_KEEP characters wait for it, and past that lines
are counted and dropped, and it is told how many. Memory only: a restart of god forgets them.

The state (god/rules/state.py) holds one ``Outputs`` under its lock; nothing here locks.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from shared.output import Posted

TASK_KEEP = 64 * 1024  # characters of a task's output kept (its last part)
ALL_KEEP = 64 * 2**20  # characters kept of all tasks' output
BOX_KEEP = 16 * 2**20  # characters waiting for one program
TAKE_MAX = 2**20  # characters one fetch takes (about)


class _Tail:
    __slots__ = ("chunks", "size", "cut", "progress", "consumer")

    def __init__(self, consumer: str) -> None:
        self.chunks: deque[tuple[str, str]] = deque()
        self.size = 0
        self.cut = 0  # characters let go from its start
        self.progress: tuple[float, float | None] | None = None
        self.consumer = consumer


class _Box:
    __slots__ = ("posted", "number", "size", "dropped")

    def __init__(self) -> None:
        self.posted: deque[tuple[int, Posted]] = deque()
        self.number = 0
        self.size = 0
        self.dropped = 0  # lines dropped since the last note


class Outputs:
    """Tasks' output: the last part of each, and what waits for each program."""

    def __init__(self, task_keep: int = TASK_KEEP, all_keep: int = ALL_KEEP, box_keep: int = BOX_KEEP) -> None:
        self.task_keep, self.all_keep, self.box_keep = task_keep, all_keep, box_keep
        self._tails: OrderedDict[tuple[str, int], _Tail] = OrderedDict()
        self._size = 0
        self._boxes: dict[str, _Box] = {}

    def keep(self, producer: str, seq: int, consumer: str, chunks: list[tuple[str, str]],
             progress: tuple[float, float | None] | None) -> None:
        """A task's lines (and progress), as its worker sent them."""
        key = (producer, seq)
        t = self._tails.get(key)
        if t is None:
            t = self._tails[key] = _Tail(consumer)
        else:
            self._tails.move_to_end(key)
            t.consumer = consumer
        if progress is not None:
            t.progress = progress
        for chunk in chunks:
            t.chunks.append(chunk)
            t.size += len(chunk[1])
            self._size += len(chunk[1])
        while t.size > self.task_keep:
            stream, text = t.chunks.popleft()
            over = t.size - self.task_keep
            if len(text) > over:  # keep its last lines, from a line's start
                cut = text.find("\n", over - 1) + 1
                if 0 < cut < len(text):
                    t.chunks.appendleft((stream, text[cut:]))
                    over = cut
                else:
                    over = len(text)
            else:
                over = len(text)
            t.size -= over
            t.cut += over
            self._size -= over
        while self._size > self.all_keep and len(self._tails) > 1:
            _, old = self._tails.popitem(last=False)
            self._size -= old.size

    def tail(self, producer: str, seq: int) -> dict[str, Any] | None:
        """What god keeps of a task's output: its lines ([stream, text], text without its
        newline), characters let go before them, its last progress and the consumer."""
        t = self._tails.get((producer, seq))
        if t is None:
            return None
        lines = [[stream, line] for stream, text in t.chunks for line in text.split("\n")[:-1]]
        return {"lines": lines, "cut": t.cut, "progress": list(t.progress) if t.progress else None,
                "consumer": t.consumer}

    def open(self, producer: str) -> None:
        """The program wants its tasks' lines (it said so in its hello)."""
        self._boxes.setdefault(producer, _Box())

    def post(self, producer: str, item: Posted) -> bool:
        """Lines for the program that owns the task, if it wants them (True)."""
        box = self._boxes.get(producer)
        if box is None:
            return False
        size = 64 + sum(len(text) for _, text in item[2])
        if box.size + size > self.box_keep:
            box.dropped += sum(text.count("\n") for _, text in item[2])
            if item[3] is None:
                return False
            item = (item[0], item[1], [], item[3])  # its progress still goes
            size = 64
        elif box.dropped:
            note = ("note", f"{box.dropped:,} lines dropped at god: the program took them more slowly than its "
                            "tasks wrote them\n")
            item = (item[0], item[1], [note, *item[2]], item[3])
            box.dropped = 0
        box.number += 1
        box.posted.append((box.number, item))
        box.size += size
        return True

    def take(self, producer: str, confirmed: int) -> tuple[list[tuple[int, Posted]], bool]:
        """Drop what the program confirmed (numbers up to ``confirmed``); what waits for it, up to
        about TAKE_MAX characters, and whether more waits behind."""
        box = self._boxes.get(producer)
        if box is None:
            return [], False
        while box.posted and box.posted[0][0] <= confirmed:
            _, item = box.posted.popleft()
            box.size -= 64 + sum(len(text) for _, text in item[2])
        out, size = [], 0
        for posted in box.posted:
            out.append(posted)
            size += 64 + sum(len(text) for _, text in posted[1][2])
            if size >= TAKE_MAX:
                break
        return out, len(out) < len(box.posted)

    def waiting(self, producer: str, confirmed: int) -> bool:
        """Whether lines the program has not confirmed wait for it."""
        box = self._boxes.get(producer)
        return box is not None and bool(box.posted) and box.posted[-1][0] > confirmed

    def close(self, producer: str) -> None:
        """The program is gone: nothing more waits for it."""
        self._boxes.pop(producer, None)
