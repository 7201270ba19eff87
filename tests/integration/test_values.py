"""Large values once: an argument past 1 MiB goes to god once per program, named by its hash,
is fetched once per consumer host into a cache its workers share, is kept by god while a task
names it (across a kill -9, with a journal) and let go after."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.gods import God, addr_env, executor_on, god_stats
from tests.support.helpers import Proc, wait_for_results, wait_until
from tests.support.tasks import digest_of, noise, noise_in

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20


def _consumer(spawn: Callable[..., Proc], god: God, tmp_path: Path, *args: str) -> Proc:
    return spawn("consumer", *args, env_extra=addr_env(god))  # (the env fixture's cache folder: this test's own)


def test_a_value_many_calls_share_goes_to_god_once_and_to_each_host_once(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _consumer(spawn, god, tmp_path, "--processes", "2")
    big = os.urandom(8 * MIB)
    want = hashlib.sha256(big).hexdigest()
    with executor_on(god, env, monkeypatch) as ex, executor_on(god, env, monkeypatch) as other:
        futures = [ex.submit(digest_of, big, i) for i in range(25)]
        assert sorted(f.result(timeout=60) for f in futures) == [(want, i) for i in range(25)]
        assert list(ex.map(digest_of, [big] * 5, range(5))) == [(want, i) for i in range(5)]
        assert other.submit(digest_of, big, 7).result(timeout=60) == (want, 7)  # another program: god has it
        assert other._sender.values.bytes_sent == 0
        s = god_stats(god, env)
        assert 8 * MIB <= s["values_in_bytes"] < 9 * MIB  # one copy from the programs, not 31
        assert 8 * MIB <= s["values_out_bytes"] < 9 * MIB  # one to this host, whose two workers share it
        assert s["values"] == 1
        (c,) = s["consumers"]  # its cache, which god sends the calls that name what it fetched first
        assert c["cache"].endswith(":" + str((tmp_path / "cache" / "god" / "values").resolve())), c["cache"]
    # Once its tasks are done and its programs gone, god lets it go
    wait_until(lambda: god_stats(god, env)["values"] == 0, 30, "the value let go")


def test_a_value_outlives_a_kill_9_of_god_with_its_tasks(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    journal = ("--journal", str(tmp_path / "journal.sqlite3"))
    god = start_god("--lease-timeout", "1", *journal)
    big = os.urandom(2 * MIB)
    ex = executor_on(god, env, monkeypatch)
    try:
        futures = [ex.submit(digest_of, big, i) for i in range(3)]
        wait_until(lambda: god_stats(god, env)["waiting"] == 3, 30, "the calls at god")
        ids = [f.task_id for f in futures]
    finally:
        ex.shutdown(wait=False)
    god.proc.signal(signal.SIGKILL)
    assert god.proc.wait() == -9
    again = start_god("--lease-timeout", "1", *journal, port=int(god.address.rsplit(":", 1)[1]))
    assert god_stats(again, env)["values"] == 1
    _consumer(spawn, again, tmp_path, "--processes", "1")
    results = wait_for_results(again.results, 3, 60)
    assert sorted(r["id"] for r in results) == sorted(ids)
    assert sorted(r["value"] for r in results) == [[hashlib.sha256(big).hexdigest(), i] for i in range(3)]
    wait_until(lambda: god_stats(again, env)["values"] == 0, 30, "the value let go")


def test_a_consumer_that_loads_data_only_takes_large_bytes(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _consumer(spawn, god, tmp_path, "--processes", "1", "--no-by-value")
    big = os.urandom(3 * MIB)
    with executor_on(god, env, monkeypatch) as ex:  # (len travels by name: builtins do)
        assert ex.submit(len, big).result(timeout=60) == 3 * MIB
        assert god_stats(god, env)["values_in_bytes"] >= 3 * MIB


def test_a_closure_over_a_large_table_runs_and_the_table_travels_once(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before: "the payload is 40,000,717 bytes, over god's --max-payload of 16,777,216"
    _consumer(spawn, god, tmp_path, "--processes", "2")
    table = os.urandom(40_000_000)

    def lookup(i: int) -> int:  # a closure: by value, with the table it holds
        return table[i]

    with executor_on(god, env, monkeypatch) as ex:
        assert [ex.submit(lookup, i).result(timeout=60) for i in range(3)] == list(table[:3])
        assert list(ex.map(lookup, range(3, 6))) == list(table[3:6])
        s = god_stats(god, env)
        assert 40_000_000 <= s["values_in_bytes"] < 41_000_000 and 40_000_000 <= s["values_out_bytes"] < 41_000_000


def test_put_sends_a_value_once_and_its_handle_is_the_value_in_calls(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _consumer(spawn, god, tmp_path, "--processes", "1")
    small = b"a table of 11"  # (below the threshold: put says it explicitly)
    with executor_on(god, env, monkeypatch) as ex:
        handle = ex.put(small)
        assert god_stats(god, env)["values"] == 1
        assert ex.submit(len, handle).result(timeout=30) == len(small)
        assert list(ex.map(digest_of, [handle, handle], [1, 2])) == [(hashlib.sha256(small).hexdigest(), i)
                                                                    for i in (1, 2)]
        assert ex.submit(sorted, {"a": handle}).result(timeout=30) == ["a"]
        assert ex._sender.values.bytes_sent < 100  # once


def test_the_host_cache_keeps_its_size_and_god_refuses_a_value_over_its_limit_in_one_line(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    god = start_god("--max-value", str(5 * MIB))
    cache = tmp_path / "host-cache"
    _consumer(spawn, god, tmp_path, "--processes", "1", "--cache-dir", str(cache), "--cache-size", "6")
    first, second = os.urandom(4 * MIB), os.urandom(4 * MIB)
    with executor_on(god, env, monkeypatch) as ex:
        assert ex.submit(len, first).result(timeout=60) == 4 * MIB
        assert ex.submit(len, second).result(timeout=60) == 4 * MIB
        kept = [p for p in cache.iterdir() if len(p.name) == 64]
        assert len(kept) == 1 and kept[0].stat().st_size > 4 * MIB  # the second; the first let go for it
        with pytest.raises(Exception, match=r"a value of 6,291,\d+ bytes is over god's --max-value of 5,242,880"):
            ex.submit(len, os.urandom(6 * MIB))


def test_a_large_result_comes_back_apart_fetched_once_and_is_let_go(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _consumer(spawn, god, tmp_path, "--processes", "1")
    with executor_on(god, env, monkeypatch) as ex:
        assert ex.submit(noise, 3 * MIB, 1).result(timeout=60) == noise(3 * MIB, 1)
        assert ex.submit(noise_in, 2 * MIB, 2).result(timeout=60) == noise_in(2 * MIB, 2)  # inside a dict
        # A large result as another call's argument: from god to the consumer, not through the program
        made = ex.submit(noise, 2 * MIB, 3)
        assert ex.submit(digest_of, made, 9).result(timeout=60) == (hashlib.sha256(noise(2 * MIB, 3)).hexdigest(), 9)
        assert made.result(timeout=60) == noise(2 * MIB, 3)
        s = god_stats(god, env)
        assert 7 * MIB <= s["values_in_bytes"] < 7 * MIB + 4096  # each once, from the consumer: not in its acks
        # Each once to the program, and the third once more to the consumer's host (its cache)
        assert 9 * MIB <= s["values_out_bytes"] < 9 * MIB + 4096
        lines = {r["id"].rsplit("/", 1)[1]: r for r in wait_for_results(god.results, 4, 30)}
        assert lines["1"]["value"] == {"value": "sha256:" + hashlib.sha256(_pickled(noise(3 * MIB, 1))).hexdigest(),
                                       "bytes": len(_pickled(noise(3 * MIB, 1)))}  # named, not 15 MB of repr
        assert lines["2"]["value"]["size"] == 2 * MIB and set(lines["2"]["value"]["data"]) == {"value", "bytes"}
    wait_until(lambda: god_stats(god, env)["values"] == 0, 30, "the results' values let go once taken")


def _pickled(value: object) -> bytes:
    import pickle

    import cloudpickle

    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

