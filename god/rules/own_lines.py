"""An ack's results lines are its own tasks' (god --keys: god/rules/acks.py ``leased_only``).

A consumer writes its results lines itself (consumer/acks.py: it has the payload, the value
and the time, and a call's arguments loaded), and with a table of principals god takes them
only as the lines of the tasks the ack names: line i is task lo+i's, and whatever JSON reader
looks at it sees that id, god's name for the consumer, the task's queue and task, and its
origin; and no line can be read as two (a raw line break other than the newline between
lines). Asked of every ack, so it is asked of the whole text at once where it can be:

- **at once** (C string calls over the text, about a microsecond an ack plus a regex pass):
  every line begins with its own id, ends with the task's queue and task, and names god's
  consumer, and none of those keys is there anywhere else, nor any key written with escapes
  (a JSON key may spell ``id`` as ``\\u0069d``). That is what a worker writes; it is taken as
  it is. (Whether the rest of a line is well-formed JSON is the consumer's own task's
  business: no line can say it is another's.)
- **line by line** otherwise (a payload or value that holds one of those words, a served-again
  dead letter): each line parsed, with no key twice at any depth, and its fields compared.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.records import json_value

_QUOTE = json.encoder.encode_basestring  # (C) a string's JSON, as results lines have it
#: Where a reader of lines breaks one besides the newline (a file read as text: \r;
#: str.splitlines: the rest). A JSON string escapes the first five, so they are never raw
#: in a results line: refused. The last three are JSON raw in a string: god escapes them.
RAW_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
_READ_AS_BREAKS = re.compile("[\x85\u2028\u2029]")
_ESCAPED_ASCII = re.compile(r"\\u00[2-7][0-9a-fA-F]")  # never written so: a key could hide behind it
KEYS = ('"id"', '"consumer"', '"queue"', '"task"')


def checked(text: str, producer: str, lo: int, hi: int, *, consumer: str, queue: str, task: str | None,
            origin: list[str] | None, first: int) -> tuple[str, str | None]:
    """(the text as god keeps it, None) when every line is its own task's, else (text, why not).

    ``origin``: the ids the batch's tasks had as dead letters (by offset from ``first``), when
    it is one served again. The text god keeps has any raw U+0085, U+2028 and U+2029 escaped
    (inside a JSON string, the same string)."""
    n = hi - lo
    if text.count("\n") != n or not text.endswith("\n"):
        return text, f"{text.count(chr(10))} results lines for the {n} tasks {producer}/{lo}..{hi - 1}"
    if any(c in text for c in RAW_BREAKS):  # (one memchr each: a regex class scans at 20 ns a character)
        return text, "a line holds a raw line break (a JSON string escapes it)"
    if not text.isascii() and ("\x85" in text or "\u2028" in text or "\u2029" in text):
        text = _READ_AS_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if origin is None and _at_once(text, producer, lo, hi, consumer, queue, task):
        return text, None
    for seq, line in zip(range(lo, hi), text.split("\n")):
        want = {"id": f"{producer}/{seq}", "consumer": consumer, "queue": queue, "task": task,
                "requeued_from": origin[seq - first] if origin is not None else None}
        said = _fields(line)
        if said is None:
            return text, f"the line for {want['id']} is not one JSON object with each key once"
        wrong = [k for k, v in want.items() if said.get(k) != v]
        if wrong:
            return text, f"the line for {want['id']} says another {', '.join(wrong)}"
    return text, None


def _at_once(text: str, producer: str, lo: int, hi: int, consumer: str, queue: str, task: str | None) -> bool:
    """Whether the lines are as a worker writes them, asked of the whole text (module docstring)."""
    n = hi - lo
    head = '{"id": ' + _QUOTE(f"{producer}/")[:-1]
    if not text.startswith(head) or text.count("\n" + head) != n - 1:
        return False
    if any(text.count(k) != n for k in KEYS) or '"requeued_from"' in text or _ESCAPED_ASCII.search(text):
        return False
    if text.count(f'"consumer": {_QUOTE(consumer)},') != n:
        return False
    if text.count(f', "queue": {_QUOTE(queue)}, "task": {json_value(task)}}}\n') != n:
        return False
    return all(map(str.startswith, text.split("\n"), [f'{head}{seq}", ' for seq in range(lo, hi)]))


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("a key twice")
    return d


def _fields(line: str) -> dict[str, Any] | None:
    """A results line's fields, if it is one JSON object with no key twice at any depth."""
    try:
        said = json.loads(line, object_pairs_hook=_unique)
    except ValueError:
        return None
    return said if isinstance(said, dict) else None
