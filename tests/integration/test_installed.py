"""The roles as an operator installs them: the wheel alone in a venv outside the checkout, and
god, producers, consumers and the tutorial's clients each on a different Python."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.config import hostname
from shared.version import VERSION
from tests.support.helpers import Proc, wait_for_results
from tests.support.installed import installed_bin
from tests.support.helpers import puts_and_results

# a build and an install from the package index, once a run, then the roles
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"

EXECUTOR_PROGRAM = """
from consumer.tasks import square
from producer import Executor

with Executor() as ex:
    print("by name:", ex.submit(square, 7).result(timeout=60), flush=True)
    try:
        ex.submit(lambda: 1).result(timeout=60)
    except Exception as e:
        print("by value:", e, flush=True)
"""


def _squares(results: list[dict[str, object]]) -> None:
    for r in results:
        n = int(str(r["payload"]))
        assert r["ok"] and r["value"] == f"{n} * {n} = {n * n}", r


def test_the_wheel_alone_runs_the_demo_flow(install_base: Path, spawn: Callable[..., Proc], tmp_path: Path) -> None:
    bin = installed_bin(install_base, HERE)
    for role in ("god", "producer", "consumer"):
        out = subprocess.run([str(bin / role), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout == f"{role} {VERSION} (Python {sys.version.split()[0]})\n", out
    where = subprocess.run([str(bin / "python"), "-c", "import god, consumer; print(god.__file__, consumer.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert where.stdout.count(str(bin.parent / "lib")) == 2, where  # the venv's copy, not the checkout's

    results = tmp_path / "results.jsonl"
    g = spawn("god", "--address", "127.0.0.1:0", "--results", str(results), installed=bin, cwd=tmp_path)
    env = {"GOD_ADDRESS": g.wait_for(r"listening on (\S+:\d+)").group(1)}
    producer = spawn("producer", "--rounds", "2", "--per-round", "5", "--interval", "0", env_extra=env,
                     installed=bin, cwd=tmp_path)
    assert producer.wait() == 0, producer.text()
    consumer = spawn("consumer", "--burst", "--processes", "2", env_extra=env, installed=bin, cwd=tmp_path)
    assert consumer.wait() == 0, consumer.text()
    _squares(wait_for_results(results, 10))
    assert (tmp_path / "state").is_dir()  # the journal went to the state directory, as with a checkout


@pytest.mark.parametrize("god_on, producer_on, consumer_on, master_on, worker_on", [
    ("3.10", "3.13", "3.12", HERE, "3.13"),  # an old god: clients with the newer (SHA-256) challenge
    ("3.13", "3.10", HERE, "3.10", "3.12"),  # a new god: clients with the older digest
])
def test_god_and_its_clients_each_on_another_python(install_base: Path, spawn: Callable[..., Proc], tmp_path: Path,
                                                     god_on: str, producer_on: str, consumer_on: str, master_on: str,
                                                     worker_on: str) -> None:
    bins = {v: installed_bin(install_base, v) for v in {god_on, producer_on, consumer_on, master_on, worker_on}}
    results = tmp_path / "results.jsonl"
    g = spawn("god", "--address", "127.0.0.1:0", "--results", str(results), installed=bins[god_on], cwd=tmp_path)
    env = {"GOD_ADDRESS": g.wait_for(r"listening on (\S+:\d+)").group(1)}
    producer = spawn("producer", "--rounds", "2", "--per-round", "5", "--interval", "0", env_extra=env,
                     installed=bins[producer_on], cwd=tmp_path)
    assert producer.wait() == 0, producer.text()
    # an Executor program on the producer's Python: a function by name runs on the consumer's;
    # one by value cannot, and says why
    (tmp_path / "program.py").write_text(EXECUTOR_PROGRAM)
    program = spawn("python", "program.py", env_extra=env, installed=bins[producer_on], cwd=tmp_path)
    spawn("consumer", "--processes", "1", env_extra=env, installed=bins[consumer_on], cwd=tmp_path)
    assert program.wait(60) == 0, program.text()
    # god shows which Python each of its peers runs
    status = spawn("god", "status", "--json", env_extra=env, installed=bins[master_on], cwd=tmp_path)
    assert status.wait() == 0, status.text()
    peers = json.loads(status.out[0])
    assert [c["python"].rsplit(".", 1)[0] for c in peers["consumers"] if c["alive"]] == [consumer_on], peers
    assert {p["python"].rsplit(".", 1)[0] for p in peers["producers"]} <= {producer_on}, peers
    _squares([r for r in wait_for_results(results, 10 + 2) if not str(r["task"]).endswith("()")])
    assert program.out[0] == "by name: 7 * 7 = 49", program.text()
    assert program.out[1].startswith(f"by value: function __main__:<lambda> was pickled by value on Python "
                                      f"{producer_on}, and consumer "), program.text()
    assert f"runs Python {consumer_on}: such a function loads only on the Python that made it" in program.out[1]
    # the tutorial's own clients, plain multiprocessing.managers on yet other Pythons (run from
    # the checkout, where tests/support/tutorial_clients.py is)
    master = spawn("python", "-m", "tests.support.tutorial_clients", "master", "get_task_queue", "get_result_queue",
                   env_extra=env, installed=bins[master_on])
    worker = spawn("python", "-m", "tests.support.tutorial_clients", "worker", "get_task_queue", "get_result_queue",
                   env_extra=env, installed=bins[worker_on])
    assert master.wait(60) == 0, master.text()
    assert worker.wait(60) == 0, worker.text()
    puts, answers = puts_and_results(master)
    assert sorted(answers) == sorted(f"{n} * {n} = {n * n}" for n in puts) and len(puts) == 10
    versions = {bins[v].parent.name for v in (god_on, producer_on, consumer_on, master_on, worker_on)}
    assert len(versions) >= 3, versions
    assert not re.search(r"Traceback|ERROR", g.text()), g.text()


ROUTED_PROGRAM = """
from producer import Executor

with Executor() as ex:
    calls = [ex.submit(lambda x: x * 2, i) for i in range(12)]
    print([f.result(timeout=60) for f in calls], flush=True)
"""


def test_calls_by_value_go_to_the_consumers_of_the_programs_python(install_base: Path, spawn: Callable[..., Proc],
                                                                    tmp_path: Path) -> None:
    other = "3.12" if HERE != "3.12" else "3.13"
    bins = {v: installed_bin(install_base, v) for v in (HERE, other)}
    results = tmp_path / "results.jsonl"
    g = spawn("god", "--address", "127.0.0.1:0", "--results", str(results), installed=bins[HERE], cwd=tmp_path)
    env = {"GOD_ADDRESS": g.wait_for(r"listening on (\S+:\d+)").group(1)}
    # Given a consumer on this Python and one on another, serving the same queue
    consumers = {v: spawn("consumer", "--processes", "1", env_extra=env, installed=bins[v], cwd=tmp_path)
                 for v in (HERE, other)}
    for c in consumers.values():
        c.wait_for(r"consumer \S+ running", stream="err")
    # When a program on the other Python calls lambdas, which travel by value
    (tmp_path / "program.py").write_text(ROUTED_PROGRAM)
    program = spawn("python", "program.py", env_extra=env, installed=bins[other], cwd=tmp_path)
    assert program.wait(60) == 0, program.text()
    # Then every call ran, each on the consumer of the program's Python
    assert program.out[0] == str([2 * i for i in range(12)]), program.text()
    lines = wait_for_results(results, 12)
    assert all(r["ok"] for r in lines), lines
    assert {r["consumer"] for r in lines} == {f"{hostname()}:{consumers[other].pid}"}, lines
