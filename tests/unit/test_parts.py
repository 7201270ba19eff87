"""Task functions, records, sources, the registry and the rate-limited log."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from consumer.tasks import resolve_task, square
from god.transport.api import last_line_with
from shared.log import RateLimitedLog
from god.transport.server import GodServerManager
from producer.sources import json_lines, parse_line, random_rounds
from shared.errors import ConfigError
from shared.log import logger, setup_logging
from shared.manager import REGISTERED, GodManager
from shared.records import Result, failure, json_line, json_value, ok_lines


def test_square_says_what_the_tutorial_says() -> None:
    assert square(3411) == "3411 * 3411 = 11634921"


def test_resolve_task_finds_module_functions() -> None:
    assert resolve_task("consumer.tasks:square") is square
    assert resolve_task("os.path:basename")("a/b") == "b"


@pytest.mark.parametrize("spec,says", [
    ("nocolon", "not of the form module:function"),
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("consumer.tasks:nope", "has no attribute 'nope'"),
    ("tests.support.tasks:NOT_CALLABLE", "is a int, not a function"),
])
def test_resolve_task_names_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        resolve_task(spec)


def test_a_failure_carries_type_message_and_traceback() -> None:
    try:
        1 / 0
    except ZeroDivisionError as e:
        ok, value, error, tb = failure(e)
    assert (ok, value, error) == (False, None, "ZeroDivisionError: division by zero")
    assert tb is not None and "Traceback" in tb and "1 / 0" in tb


def test_a_result_is_one_json_line_with_the_named_fields() -> None:
    r = Result(id="t", payload={"x": object}, ok=True, value="v", consumer="c", attempts=2)
    d = json.loads(r.to_json())
    assert {"id", "payload", "ok", "value", "error", "consumer", "attempts", "queue", "task"} <= set(d)
    assert (d["id"], d["value"], d["attempts"], d["queue"], d["task"]) == ("t", "v", 2, "default", None)
    assert Result.from_json(r.to_json()).value == "v"


def test_random_rounds_are_the_tutorials_integers() -> None:
    rounds = list(random_rounds(3, 10))
    assert [len(r.payloads) for r in rounds] == [10, 10, 10]
    assert all(0 <= n <= 999 for r in rounds for n in r.payloads)
    assert rounds[2].where(3) == "round 3, task 4"


def test_json_lines_yields_what_came_before_a_bad_line_then_names_it() -> None:
    lines = ["1\n", "\n", '{"a": 2}\n', "oops\n", "4\n"]
    out = []
    with pytest.raises(ConfigError, match=r"in.jsonl:4: not valid JSON"):
        for batch in json_lines(lines, name="in.jsonl", batch_size=10):
            out.append(batch)
    assert [b.payloads for b in out] == [[1, {"a": 2}]]
    assert out[0].where(1) == "in.jsonl:3"


def test_json_lines_names_a_line_nested_too_deeply_to_read() -> None:
    with pytest.raises(ConfigError, match=r"deep.jsonl:2: not valid JSON \(nested too deeply\)"):
        list(json_lines(["1\n", "[" * 100_000 + "]" * 100_000], name="deep.jsonl", batch_size=10))


def test_server_and_client_register_the_same_names() -> None:
    server_registry, client_registry = getattr(GodServerManager, "_registry"), getattr(GodManager, "_registry")
    assert set(server_registry) == set(client_registry) == set(REGISTERED)
    assert all(client_registry[n][0] is None for n in REGISTERED)  # no callables leak to clients
    assert all(callable(server_registry[n][0]) for n in REGISTERED)  # no callables leak to clients


def test_rate_limited_log_holds_back_repeats_and_says_how_many() -> None:
    t = [0.0]
    log = RateLimitedLog(every_s=10, now=lambda: t[0])
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        assert log.warning("key", "refused {}", "a")
        assert not log.warning("key", "refused {}", "b")
        assert not log.warning("key", "refused {}", "c")
        assert log.warning("limit", "full")  # another kind is not held back
        t[0] = 11.0
        assert log.warning("key", "refused {}", "d")
    finally:
        logger.remove(sink)
    assert lines == ["refused a", "full", "refused d (2 more like it in the last 10s not logged)"]


@pytest.mark.parametrize("fields", [
    ("a/1", 5, True, "5 * 5 = 25", None, None, "c", 1, 1763849.25, "default", None),
    ("a/2", {"n": [1, 2.5, 'x\u00e9"\\\n']}, False, None, 'ValueError: bad "x"\n', "Traceback\n  line\n", "vm:1", 3, 0.1,
     "images", "crawl:fetch"),
    (None, None, True, b"bytes", None, None, "tutorial", 1, 2.0, "default", None),
    ("\u00e9/3", "na\u00efve \x00 \u2028", True, 10**30, None, None, "c", 1, 5e-7, "q.1-_", "m:f"),
    ("t", True, True, float("inf"), None, None, "c", 1, 1.0, "default", None),
    ("f", 2.5, True, float("nan"), None, None, "c", 1, 1.0, "default", None),
])
def test_result_lines_are_what_json_dumps_writes(fields: tuple[Any, ...]) -> None:
    names = ("id", "payload", "ok", "value", "error", "traceback", "consumer", "attempts", "time", "queue", "task")
    expected = json.dumps(dict(zip(names, fields)), default=repr, ensure_ascii=False)
    assert json_line(*fields) == expected


@pytest.mark.parametrize("line", [
    "7\n", "  [1, 2.5, null]  \r\n", '{"url": "https://example.org/", "n": [true, false]}', '"text"\t',
    # not one JSON value: the same error, at the same place, as json.loads gives
    "", "\n", "1 2\n", "[1,\n", "nan-ish", "\x0c5", "5\x0c", '{"a": 1}}', "  x",
])
def test_parse_line_reads_a_line_exactly_as_json_loads_does(line: str) -> None:
    try:
        expected: object = json.loads(line)
    except json.JSONDecodeError as e:
        with pytest.raises(json.JSONDecodeError) as got:
            parse_line(line)
        assert (got.value.msg, got.value.pos) == (e.msg, e.pos)
    else:
        assert parse_line(line) == expected


def test_last_line_with_finds_the_last_match_across_chunk_edges(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    lines = [f'{{"id": "p/{i % 7}", "n": {i}}}' for i in range(200)]
    f.write_text("\n".join(lines) + "\n")
    for chunk in (5, 13, 64, 1 << 20):
        for k in range(7):
            found = last_line_with(f, f'{{"id": "p/{k}", ', chunk)
            assert found == max((line for line in lines if line.startswith(f'{{"id": "p/{k}", ')),
                                key=lambda line: int(line.rsplit(" ", 1)[1][:-1])), (chunk, k)
        assert last_line_with(f, '{"id": "p/70", ', chunk) is None
    f.write_text(lines[3])  # no newline at the end
    assert last_line_with(f, '{"id": "p/3", ', 4) == lines[3]


def test_log_json_writes_one_flat_object_a_line() -> None:
    lines: list[str] = []
    setup_logging("god", json=True, sink=lines.append)
    try:
        logger.bind(queue="mail").warning("queue {} is paused", "mail")
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("it broke")
    finally:
        setup_logging("god")
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "level", "role", "host", "pid", "message", "queue"}
    assert (first["level"], first["role"], first["message"], first["queue"]) == ("WARNING", "god", "queue mail is paused",
                                                                                 "mail")
    assert all(not isinstance(v, (dict, list)) for v in first.values())  # flat
    assert len(lines[0]) < 250 and lines[0].endswith("\n") and lines[0].count("\n") == 1
    assert second["message"] == "it broke" and "KeyError: 'k'" in second["exception"]


@pytest.mark.parametrize("payload, kind, data", [
    (b"\x00" * 300, "bytes", b"\x00" * 300),  # over the limit on its own: its JSON is not made
    (b"\xff" * 40, "bytes", b"\xff" * 40),  # 40 bytes, but 160 characters of JSON
    ("é" * 200, "str", ("é" * 200).encode()),  # the digest of its UTF-8, as a file of it has
    (list(range(100)), "json", json.dumps(list(range(100))).encode()),
])
def test_a_results_line_shows_a_payload_over_the_limit_by_its_size_and_digest(payload: Any, kind: str,
                                                                               data: bytes) -> None:
    line = json.loads(json_line("p/1", payload, True, 7, None, None, "c", 1, 0.0, payload_max=100))
    assert line["payload"] == {"large": kind, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert line["value"] == 7
    fast = json.loads(ok_lines("p", "c", 1, "default", None, payload_max=100)(1, payload, 7, "0.0"))
    assert fast == line  # the worker's own path writes the same


@pytest.mark.parametrize("payload", [b"x" * 90, "é" * 98, list(range(20)), 12345, None])
def test_a_payload_within_the_limit_is_written_whole(payload: Any) -> None:
    line = json.loads(json_line("p/1", payload, True, 7, None, None, "c", 1, 0.0, payload_max=100))
    assert line["payload"] == json.loads(json_value(payload))
