"""Chaos: consumers killed, god killed and restarted, links dropped; every task still has one result.

Bounded (well under a minute here) and seeded: the kinds and order of faults are fixed,
their timing follows the run. It prints what happened, for anyone reading the log.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.tasks import square
from tests.support.gods import God, god_stats
from tests.support.helpers import Proc, read_results, wait_until, write_tasks
from tests.support.relay import Relay

PER_PRODUCER = 2500
CONSUMERS = 3
SEED = 20261122


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A relay that the test's processes reach god through (asked for before them, it closes
    after they stopped: closed first, it left them waiting for a god they could not reach)."""
    r = Relay(("127.0.0.1", 1))  # pointed at god once it listens
    yield r
    r.close()


def target(g: God) -> tuple[str, int]:
    host, port = g.address.rsplit(":", 1)
    return host, int(port)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("concurrency", [1, 50])
def test_chaos_every_task_gets_exactly_one_result(
    relay: Relay, start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], concurrency: int,
) -> None:
    rng = random.Random(SEED)
    n_tasks = 2 * PER_PRODUCER
    god_args = ("--journal", str(tmp_path / "journal.sqlite3"), "--lease-timeout", "1", "--capacity", "400",
                "--quiet")
    # Given god behind a relay, two producers of known unique payloads, three consumers
    g = start_god(*god_args)
    relay.target = target(g)
    via_relay = {"GOD_ADDRESS": relay.address}
    files = [write_tasks(tmp_path / f"p{k}.jsonl", list(range(k * PER_PRODUCER, (k + 1) * PER_PRODUCER)))
             for k in range(2)]
    producers = [spawn("producer", "--from", str(f), env_extra=via_relay) for f in files]

    def consumer() -> Proc:
        return spawn("consumer", "--task", "tests.support.tasks:nap", "--processes", "2", "--concurrency", str(concurrency),
                     env_extra=via_relay, new_session=True)

    consumers = [consumer() for _ in range(CONSUMERS)]

    def done() -> int:
        return len({r["id"] for r in read_results(g.results)})

    # When, while they work, consumers are SIGKILLed, links are cut, and god is killed once
    faults = ["kill consumer", "cut links", "kill consumer", "kill god", "cut links", "kill consumer",
              "kill consumer", "cut links", "kill consumer", "cut links"]
    log: list[str] = []
    for k, fault in enumerate(faults, 1):
        threshold = k * n_tasks // (len(faults) + 2)  # spread over the run, the last at about 5/6
        try:
            wait_until(lambda: done() >= threshold, 60, f"{threshold} results before '{fault}'")
        except AssertionError:
            tails = "\n".join(f"--- {p.name} {p.pid}\n" + "\n".join(p.err[-15:]) for p in [g.proc, *consumers])
            raise AssertionError(f"stuck after {log}:\n{god_stats(g, env)}\n{tails}") from None
        time.sleep(rng.uniform(0, 0.3))  # a random moment, not a synchronisation
        at = f"at {done()} results"
        if fault == "kill consumer":
            victim = consumers.pop(rng.randrange(len(consumers)))
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            consumers.append(consumer())
        elif fault == "cut links":
            fault += f" ({relay.cut()} connections)"
        else:
            g.proc.signal(signal.SIGKILL)
            g.proc.wait()
            g = start_god(*god_args)  # same journal, new port: the relay follows it
            relay.target = target(g)
        log.append(f"{fault} {at}")

    # Then every payload has exactly one recorded result, and the producers finished cleanly
    wait_until(lambda: done() >= n_tasks, 90, f"results for all {n_tasks} tasks")
    for p in producers:
        assert p.wait(timeout=30) == 0, p.text()
    results = read_results(g.results)
    lines_per_id = Counter(r["id"] for r in results)
    repeated = {tid: n for tid, n in lines_per_id.items() if n > 1}
    assert not repeated, f"tasks with more than one result line: {repeated}"
    assert sorted(r["payload"] for r in results) == list(range(n_tasks))
    assert all(r["ok"] and r["value"] == square(r["payload"]) for r in results)
    stats = god_stats(g, env)
    redelivered = sum(1 for r in results if r["attempts"] > 1)
    with capsys.disabled():  # shown in every run, not only when the test fails
        print(f"\nchaos (--concurrency {concurrency}): {'; '.join(log)}\nchaos: {n_tasks} tasks, {len(results)} result lines, "
              f"{redelivered} results after a redelivery, {stats['duplicates']} duplicate results "
              f"dropped by the last god, {stats['redelivered']} redeliveries by the last god")
