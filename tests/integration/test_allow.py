"""Consumers run only what their operator allows (consumer --allow, --no-by-value).

A put may name any ``module:function`` and a call may carry its function by value, and a
payload or a call's arguments may be any pickle, whose loading can run code. A consumer told
``--allow consumer.tasks:square --no-by-value`` runs its task and the allowed functions with
data only: everything else fails with a result naming the rule, nothing of it runs, and the
consumer goes on.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer.tasks import square
from producer import Executor
from shared import exitcodes, items
from shared.calls import CallPickler, call_task
from shared.client import GodClient
from shared.errors import NotAllowed
from shared.records import DEFAULT_QUEUE
from tests.support.gods import God, addr_env, settings_for
from tests.support.helpers import Proc, assert_clean_failure, wait_for_results
from tests.support.principals import new_keys, write_table

pytestmark = pytest.mark.timeout(60)


class Bomb:
    """A payload whose unpickling creates a file (the stock unpickler calls open(path, "w"))."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def test_a_consumer_runs_only_what_it_allows_and_loads_data_only(
    god: God, env: dict[str, str], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    mark = tmp_path / "ran"
    secret = 42

    def by_value(x: int) -> int:  # a local function: it travels by value
        return x + secret

    name, fn = CallPickler().function(by_value)
    bomb = pickle.dumps(Bomb(mark))
    puts = [  # (task, payloads): each a put of one task, seq 1.. in order
        ("os:system", [f"touch {mark}"]),
        ("consumer.tasks:file_digest", ["/etc/hostname"]),
        (call_task(name), [(fn, (1,), {})]),
        (None, None),  # the consumer's own task, with a payload that is a pickled object (below)
        (call_task("consumer.tasks:square"), [("consumer.tasks:square", (3,), {})]),
        (call_task("consumer.tasks:square"), [("consumer.tasks:square", pickle.dumps(((Bomb(mark),), {})))]),
        (None, [7]),
    ]
    # Given a consumer that runs consumer.tasks:square and takes no code from producers
    consumer = spawn("consumer", "--processes", "1", "--allow", "consumer.tasks:square", "--no-by-value",
                     env_extra=addr_env(god))
    producer = GodClient(settings_for(god, env), name="attacker", role="producer")
    try:
        # When a producer puts tasks of other functions, code by value, and pickled objects
        for seq, (task, payloads) in enumerate(puts, 1):
            blob = pickle.dumps((items.OPAQUE, [bomb])) if payloads is None else items.pack(payloads)
            put = (seq, 1, blob, DEFAULT_QUEUE, task, 0, None, None, None)
            assert producer.put_many(put, 5.0) == 1, task
        got = {int(r["id"].rpartition("/")[2]): r for r in wait_for_results(god.results, len(puts))}
    finally:
        producer.close()
    # Then each fails with a result naming the rule that refused it, and nothing of it ran
    errors = {seq: r["error"] for seq, r in got.items() if not r["ok"]}
    assert "'os:system' is not allowed on consumer" in errors[1] and "--allow consumer.tasks:square" in errors[1]
    assert "'consumer.tasks:file_digest' is not allowed" in errors[2]
    assert f"function {name} came pickled" in errors[3] and "--no-by-value" in errors[3]
    assert "payload is a pickled object" in errors[4] and "loads data only (--no-by-value)" in errors[4]
    assert "arguments of consumer.tasks:square cannot be loaded" in errors[6] and "names" in errors[6]
    assert not mark.exists()
    # while what it allows ran, and the consumer went on
    assert (got[5]["ok"], got[7]["ok"], got[7]["value"]) == (True, True, "7 * 7 = 49")
    assert set(errors) == {1, 2, 3, 4, 6}
    assert consumer.popen.poll() is None


def test_allow_globs_that_are_not_function_names_are_refused_at_once(spawn: Callable[..., Proc], god: God) -> None:
    bad = spawn("consumer", "--allow", "consumer.tasks", env_extra=addr_env(god))
    assert_clean_failure(bad, exitcodes.CONFIG, "--allow 'consumer.tasks': expected module:function globs, "
                         "e.g. consumer.tasks:* or mypkg.*:*")


def test_which_producers_may_send_code_is_a_right_in_gods_table(
    start_god: Callable[..., God], env: dict[str, str], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    keys = new_keys("ingest", "coder", "worker")
    roles = {"ingest": ["producer"], "coder": ["producer"], "worker": ["consumer"]}
    table = write_table(tmp_path / "keys.json", keys, roles)
    entries = json.loads(table.read_text())
    entries["principals"][1]["by_value"] = True  # coder's
    table.write_text(json.dumps(entries))
    god = start_god("--keys", str(table))
    spawn("consumer", "--processes", "1", environment={**env, "GOD_AUTHKEY": keys["worker"].decode(),
                                                       "GOD_ADDRESS": god.address})
    offset = 100

    def local(x: int) -> int:  # travels by value
        return x + offset

    def as_(name: str) -> Executor:
        return Executor(settings=dataclasses.replace(settings_for(god, env), authkey=keys[name]))

    # A producer without the right is refused a function by value, and may call one by name: its
    # Executor says so as the call is made (god told it its rights as it said hello)
    refusal = "ingest may not call put_many with a function by value: it may send data and functions by name only"
    with as_("ingest") as ex:
        with pytest.raises(NotAllowed, match=refusal):
            ex.submit(local, 1)
        assert ex.submit(square, 4).result(timeout=30) == "4 * 4 = 16"
    # and god refuses it whatever the program says
    name, fn = CallPickler().function(local)
    raw = GodClient(dataclasses.replace(settings_for(god, env), authkey=keys["ingest"]), name="raw", role="producer")
    try:
        with pytest.raises(NotAllowed, match=refusal):
            raw.put_many((1, 1, items.pack([(fn, (1,), {})]), DEFAULT_QUEUE, call_task(name), 0, None, None, None), 5.0)
    finally:
        raw.close()
    # while one with the right sends functions by value
    with as_("coder") as ex:
        assert ex.submit(local, 1).result(timeout=30) == 101
