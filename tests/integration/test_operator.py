"""What an operator does to a running god from the command line: dead letters and failures
listed, served again and dropped, across a restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, read_results, wait_for_results, wait_until, write_tasks

pytestmark = pytest.mark.timeout(90)


def ask(spawn: Callable[..., Proc], env: dict[str, str], *args: str, code: int = 0) -> Proc:
    """Run ``python -m god ARGS`` against god; it must exit with code."""
    p = spawn("god", *args, env_extra=env)
    assert p.wait() == code, p.text()
    return p


def test_dead_letters_are_listed_kept_across_a_restart_served_again_and_purged(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks 10, 20, 21 where 10 and 20 end the worker running them, and one attempt each
    journal = str(tmp_path / "journal.sqlite3")
    g = start_god("--max-attempts", "1", "--journal", journal)
    env = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [10, 20, 21])), env_extra=env).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:exit_on_tens", "--processes", "1", env_extra=env)
    wait_for_results(g.results, 3)
    c.stop()
    # When the operator lists them
    dead = [json.loads(line) for line in ask(spawn, env, "dead", "--json").out]
    assert sorted(d["payload"] for d in dead) == [10, 20]  # as JSON values
    assert all(d["queue"] == "default" and d["attempts"] == 1 and "died" in d["reason"] for d in dead)
    assert ask(spawn, env, "failed").out == []  # dead letters are not failed results
    # Then they are still there after god restarts
    port = int(g.address.rsplit(":", 1)[1])
    g.proc.stop()
    g = start_god("--max-attempts", "1", "--journal", journal, port=port)
    listed = ask(spawn, env, "dead")
    assert len(listed.out) == 2 and "2 dead letters" in listed.text()
    # And one served again runs as a new task whose result says where it came from
    ten = next(d["id"] for d in dead if d["payload"] == 10)
    moved = ask(spawn, env, "requeue", ten)
    (line,) = moved.out
    old, new = line.split(" -> ")
    assert old == ten and new != ten
    spawn("consumer", "--task", "consumer.tasks:square", "--processes", "1", env_extra=env)
    r = next(r for r in wait_for_results(g.results, 4) if r["id"] == new)
    assert (r["ok"], r["value"], r["requeued_from"]) == (True, square(10), ten)
    assert len({r["id"] for r in read_results(g.results)}) == 4  # one line per id
    # And each can be looked up: the new task done with its results line, the other still dead
    t = json.loads(ask(spawn, env, "task", new, "--json").out[0])
    assert (t["state"], t["result"]["requeued_from"], t["result"]["value"]) == ("done", ten, square(10))
    twenty = next(d["id"] for d in dead if d["payload"] == 20)
    (line, result) = ask(spawn, env, "task", twenty).out
    assert line.startswith(f"{twenty}: dead (queue default, attempts 1)") and "died" in line
    assert json.loads(result)["error"].startswith("dead letter")
    # And an id god does not keep is one clear line and a non-zero exit, changing nothing
    refused = ask(spawn, env, "requeue", ten, code=1)
    assert "god refused: 1 id god keeps no dead letter of: " + ten in refused.text()
    assert "Traceback" not in refused.text()
    # And purge drops the other for good
    assert ask(spawn, env, "purge", "--dead").out == ["1 dead letter dropped"]
    assert ask(spawn, env, "dead", "--json").out == []


def test_failed_lists_the_last_failed_results(god: God, spawn: Callable[..., Proc], tmp_path: Path) -> None:
    env = addr_env(god)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [1, "x", 3])), env_extra=env).wait() == 0
    spawn("consumer", "--processes", "1", env_extra=env)
    wait_for_results(god.results, 3)
    (f,) = [json.loads(line) for line in ask(spawn, env, "failed", "--json").out]
    assert f["payload"] == "x" and "TypeError" in f["error"] and f["traceback"]
    assert ask(spawn, env, "failed").out[0].startswith(f'{f["id"]}  queue default  task -  "x"  1 attempt')
    assert ask(spawn, env, "failed", "--queue", "other").out == []
    assert ask(spawn, env, "task", f["id"]).out[0] == f"{f['id']}: failed"
    unknown = ask(spawn, env, "task", "nobody/1", code=1)
    assert "god refused: god knows no task nobody/1" in unknown.text() and "Traceback" not in unknown.text()


def test_a_paused_queue_stays_paused_across_a_restart_until_resumed(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    journal = str(tmp_path / "journal.sqlite3")
    g = start_god("--journal", journal)
    env = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "a.jsonl", [1, 2, 3])), env_extra=env).wait() == 0
    assert ask(spawn, env, "pause", "default").out == ["queue default paused: nothing more starts from it"]
    port = int(g.address.rsplit(":", 1)[1])
    g.proc.stop()
    g = start_god("--journal", journal, port=port)
    g.proc.wait_for(r"queue default is paused \(since before god restarted\)", stream="err")
    # A consumer serving both queues runs the other queue's tasks, and none of the paused one's
    spawn("consumer", "--queues", "other,default", "--processes", "1", env_extra=env)
    assert spawn("producer", "--queue", "other", "--from", str(write_tasks(tmp_path / "b.jsonl", [7])),
                 env_extra=env).wait() == 0
    (r,) = wait_for_results(g.results, 1)
    assert r["queue"] == "other"
    status = json.loads(ask(spawn, env, "status", "--json").out[0])["queues"]["default"]
    assert (status["paused"], status["waiting"], status["running"]) == (True, 3, 0)
    assert "paused" in ask(spawn, env, "status").text()
    assert ask(spawn, env, "resume", "default").out == ["queue default resumed"]
    assert sorted(r["payload"] for r in wait_for_results(g.results, 4) if r["queue"] == "default") == [1, 2, 3]
    assert "god knows no queue nope" in ask(spawn, env, "pause", "nope", code=1).text()


def test_drain_makes_a_consumer_finish_what_it_runs_hand_back_the_rest_and_exit_0(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    env = addr_env(god)
    tasks = write_tasks(tmp_path / "slow.jsonl", [{"n": i, "s": 0.4} for i in range(8)])
    assert spawn("producer", "--from", str(tasks), env_extra=env).wait() == 0
    c = spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "1", env_extra=env)
    name = c.wait_for(r"consumer (\S+) running", stream="err").group(1)
    wait_for_results(god.results, 1)
    asked = ask(spawn, env, "drain", name)
    assert asked.out[0].startswith(f"consumer {name} asked to drain")
    assert c.wait(15) == 0, c.text()
    assert "god asked it to drain" in c.text()
    done_first = len(read_results(god.results))
    assert done_first < 8, "the consumer finished everything first: nothing was handed back"
    spawn("consumer", "--task", "tests.support.tasks:slow", "--processes", "2", "--burst", env_extra=env)
    results = wait_for_results(god.results, 8)
    assert sorted(r["payload"]["n"] for r in results) == list(range(8))
    assert all(r["attempts"] == 1 for r in results)  # handed back unstarted: no attempt used
    refused = ask(spawn, env, "drain", "nobody:1", code=1)
    assert "god knows no consumer nobody:1" in refused.text()


def running(spawn: Callable[..., Proc], env: dict[str, str], queue: str) -> int:
    return int(json.loads(ask(spawn, env, "status", "--json").out[0])["queues"].get(queue, {}).get("running", 0))


@pytest.mark.parametrize("task, concurrency, stopped", [
    ("tests.support.tasks:hang_on_13", "1", r"task \S+/1 was cancelled; stopping it"),  # a worker running it alone: killed
    ("tests.support.tasks:await_until_cancelled", "4", r"task 13 cancelled"),  # a coroutine: cancelled in its worker
])
def test_cancel_stops_a_running_task_and_the_consumer_goes_on(
    god: God, spawn: Callable[..., Proc], tmp_path: Path, task: str, concurrency: str, stopped: str
) -> None:
    env = addr_env(god)
    assert spawn("producer", "--queue", "q", "--from", str(write_tasks(tmp_path / "a.jsonl", [13])),
                 env_extra=env).wait() == 0
    c = spawn("consumer", "--queues", "q,default", "--task", task, "--processes", "1", "--concurrency", concurrency,
              env_extra=env)
    wait_until(lambda: running(spawn, env, "q") == 1, 15, "task 13 running")
    assert ask(spawn, env, "cancel", "--queue", "q").out == [
        "cancelled 1 task: 0 waiting, 0 scheduled, 1 running (their consumers are told to stop them)"]
    (r,) = wait_for_results(god.results, 1)
    assert (r["payload"], r["ok"], r["consumer"]) == (13, False, "god") and r["error"].startswith("cancelled")
    c.wait_for(stopped, stream="err")
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "b.jsonl", [2])), env_extra=env).wait() == 0
    assert [(r["payload"], r["ok"]) for r in wait_for_results(god.results, 2)] == [(13, False), (2, True)]
    assert c.popen.poll() is None  # it goes on
    assert ask(spawn, env, "task", r["id"]).out[0] == f"{r['id']}: cancelled"


def test_cancelled_waiting_tasks_never_run(god: God, spawn: Callable[..., Proc], tmp_path: Path) -> None:
    env = addr_env(god)
    assert spawn("producer", "--queue", "w", "--from", str(write_tasks(tmp_path / "a.jsonl", [1, 2, 3])),
                 env_extra=env).wait() == 0
    assert ask(spawn, env, "cancel", "--queue", "w").out[0].startswith("cancelled 3 tasks: 3 waiting")
    assert spawn("producer", "--queue", "w", "--from", str(write_tasks(tmp_path / "b.jsonl", [4])),
                 env_extra=env).wait() == 0
    spawn("consumer", "--queues", "w", "--processes", "1", env_extra=env)
    results = wait_for_results(god.results, 4)
    assert sorted((r["payload"], r["consumer"] == "god") for r in results) == [(1, True), (2, True), (3, True),
                                                                                (4, False)]
    assert "god refused: 1 task not waiting" in ask(spawn, env, "cancel", results[0]["id"], code=1).text()


def test_a_stuck_task_is_seen_in_status_and_god_warns_once(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    g = start_god("--warn-after", "1")
    env = addr_env(g)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "a.jsonl", [13])), env_extra=env).wait() == 0
    spawn("consumer", "--task", "tests.support.tasks:hang_on_13", "--processes", "1", env_extra=env)
    g.proc.wait_for(r"task \S+/1 has been held by consumer \S+ for \ds \(over --warn-after 1\): running that long, "
                    r"or stuck; 'python -m god cancel \S+/1' stops it", stream="err")
    (c,) = json.loads(ask(spawn, env, "status", "--json").out[0])["consumers"]
    assert c["oldest_held_s"] >= 1 and c["running"] == 1
    assert "oldest task held" in ask(spawn, env, "status").text()
    assert sum("has been held by" in line for line in g.proc.err) == 1
    ask(spawn, env, "cancel", "--queue", "default")  # so the consumer stops at once at the end


def test_a_schedule_puts_its_task_each_period_across_a_restart(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    journal = str(tmp_path / "journal.sqlite3")
    g = start_god("--journal", journal)
    env = addr_env(g)
    added = ask(spawn, env, "schedule", "add", "tick", "--every", "1", "--payload", "3", "--task", "consumer.tasks:square")
    assert added.out[0].startswith("schedule tick: every 1s, queue default, task consumer.tasks:square, payload 3")
    assert "exists already" in ask(spawn, env, "schedule", "add", "tick", "--every", "5", code=1).text()
    spawn("consumer", "--processes", "1", env_extra=env)
    wait_for_results(g.results, 2)
    port = int(g.address.rsplit(":", 1)[1])
    g.proc.stop()
    g = start_god("--journal", journal, port=port)
    (s,) = [json.loads(line) for line in ask(spawn, env, "schedule", "list", "--json").out]
    assert (s["name"], s["every"], s["payload"]) == ("tick", 1.0, 3) and s["runs"] >= 2
    results = wait_for_results(g.results, s["runs"] + 2)
    ids = [r["id"] for r in results]
    assert ids == [f"schedule-tick/{i}" for i in range(1, len(ids) + 1)]  # each run once, in order
    assert all(r["ok"] and r["value"] == "3 * 3 = 9" for r in results)
    assert ask(spawn, env, "schedule", "remove", "tick").out[0].startswith("schedule tick removed (it ran ")
    assert ask(spawn, env, "schedule", "list", "--json").out == []
