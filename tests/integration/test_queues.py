"""Named queues, tasks that name their function, and priorities, with real processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from shared import exitcodes
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks
from tests.support.web import scrape

pytestmark = pytest.mark.timeout(60)


def test_two_consumers_on_two_queues_each_run_their_own_queues_tasks(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given a crawler's two stages: pages (their links) on one queue, images on another
    env = addr_env(god)
    pages = spawn("consumer", "--queues", "pages", "--task", "tests.support.tasks:links", "--processes", "1", env_extra=env)
    images = spawn("consumer", "--queues", "images", "--task", "tests.support.tasks:echo", "--processes", "1",
                   env_extra=env)
    pages.wait_for("running", stream="err")
    images.wait_for("running", stream="err")
    # When a producer puts work on both
    src = write_tasks(tmp_path / "t.jsonl", [0, 1, 2])
    for queue in ("pages", "images"):
        assert spawn("producer", "--from", str(src), "--queue", queue, env_extra=env).wait() == 0
    # Then each result comes from the consumer that serves its queue, with its function
    records = wait_for_results(god.results, 6)
    by_queue = {q: [r for r in records if r["queue"] == q] for q in ("pages", "images")}
    consumer_of = {q: {r["consumer"] for r in rs} for q, rs in by_queue.items()}
    assert len(consumer_of["pages"]) == 1 and len(consumer_of["images"]) == 1
    assert consumer_of["pages"] != consumer_of["images"]
    assert sorted(r["value"] for r in by_queue["pages"]) == [[1, 2], [3, 4], [5, 6]]
    assert sorted(r["value"] for r in by_queue["images"]) == [0, 1, 2]


def test_a_task_runs_the_function_it_names_and_a_missing_one_fails_alone(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given one consumer running the tutorial's square by default
    env = addr_env(god)
    consumer = spawn("consumer", "--processes", "1", env_extra=env)
    # When tasks name a function, a function that is not there, and none
    src = write_tasks(tmp_path / "t.jsonl", [5, 6])
    for extra in (("--task", "tests.support.tasks:echo"), ("--task", "tests.support.tasks:no_such_function"), ()):
        assert spawn("producer", "--from", str(src), *extra, env_extra=env).wait() == 0
    # Then each ran what it named, the missing one failed saying what and where, and the consumer went on
    records = wait_for_results(god.results, 6)
    by_task: dict[str | None, list[dict[str, object]]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    assert sorted(r["value"] for r in by_task["tests.support.tasks:echo"]) == [5, 6]  # type: ignore[type-var]
    assert sorted(r["value"] for r in by_task[None]) == [square(5), square(6)]  # type: ignore[type-var]
    missing = by_task["tests.support.tasks:no_such_function"]
    assert len(missing) == 2 and not any(r["ok"] for r in missing)
    error = str(missing[0]["error"])
    assert "'tests.support.tasks:no_such_function'" in error and "no attribute" in error
    assert f"consumer {missing[0]['consumer']}" in error
    assert consumer.popen.poll() is None


def test_priorities_are_served_highest_first_in_the_order_put(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks put at three priorities before any consumer runs
    env = addr_env(god)
    for priority, payloads in ((0, [1, 2]), (9, [10, 11]), (5, [20, 21]), (9, [12])):
        src = write_tasks(tmp_path / f"p{priority}-{payloads[0]}.jsonl", payloads)
        assert spawn("producer", "--from", str(src), "--priority", str(priority), env_extra=env).wait() == 0
    # When one worker takes them one at a time
    spawn("consumer", "--processes", "1", "--prefetch", "1", "--burst", env_extra=env)
    # Then they ran highest priority first, first in first out within a level
    records = wait_for_results(god.results, 7)
    assert [r["payload"] for r in records] == [10, 11, 12, 20, 21, 1, 2]


def test_a_restarted_god_keeps_each_tasks_queue_function_and_priority(
    start_god: Callable[..., God], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    # Given tasks on two queues, one naming its function, one at priority 9, and god stopped
    journal = ("--journal", str(tmp_path / "journal.sqlite3"))
    g = start_god(*journal)
    env = addr_env(g)
    for n, args in ((3, ("--queue", "later")), (4, ("--queue", "urgent", "--task", "tests.support.tasks:echo")),
                    (5, ("--queue", "later", "--priority", "9"))):
        src = write_tasks(tmp_path / f"t{n}.jsonl", [n])
        assert spawn("producer", "--from", str(src), *args, env_extra=env).wait() == 0
    g.proc.stop()
    # When it starts again on its journal and a consumer serves both queues
    again = start_god(*journal)
    again.proc.wait_for(r"journal .*: 3 tasks to serve", stream="err")
    spawn("consumer", "--queues", "urgent,later", "--processes", "1", "--prefetch", "1", "--burst",
          env_extra=addr_env(again))
    # Then each ran as it was put: its queue first, its function, its priority
    records = wait_for_results(again.results, 3)
    assert [(r["queue"], r["task"], r["value"]) for r in records] == [
        ("urgent", "tests.support.tasks:echo", 4), ("later", None, square(5)), ("later", None, square(3))]


@pytest.mark.parametrize("role, args, says", [
    ("producer", ("--rounds", "1", "--queue", "no spaces"), "queue name 'no spaces' is not allowed"),
    ("producer", ("--rounds", "1", "--priority", "10"), "priority 10 is not a whole number from 0 to 9"),
    ("producer", ("--rounds", "1", "--task", "nocolon"), "task 'nocolon' is not of the form module:function"),
    ("consumer", ("--queues", "a,b/c"), "--queues: queue name 'b/c' is not allowed"),
    ("consumer", ("--queues", "a,a"), "names a queue twice"),
])
def test_a_bad_queue_task_or_priority_is_one_line_at_once(
    god: God, spawn: Callable[..., Proc], role: str, args: tuple[str, ...], says: str
) -> None:
    p = spawn(role, *args, env_extra=addr_env(god))
    assert p.wait(20) == exitcodes.CONFIG, p.text()
    errors = [line for line in p.err if "ERROR" in line]
    assert len(errors) == 1 and says in errors[0], p.text()
    assert "Traceback" not in p.text()


def test_status_and_metrics_show_each_queue(start_god: Callable[..., God], spawn: Callable[..., Proc],
                                             tmp_path: Path) -> None:
    g = start_god("--metrics-port", "0")
    url = g.proc.wait_for(r"metrics on (http://\S+/metrics)", stream="err").group(1)
    env = addr_env(g)
    src = write_tasks(tmp_path / "t.jsonl", [1, 2, 3])
    assert spawn("producer", "--from", str(src), "--queue", "images", env_extra=env).wait() == 0
    assert spawn("producer", "--from", str(src), "--queue", "pages", env_extra=env).wait() == 0
    spawn("consumer", "--queues", "pages", "--processes", "1", "--burst", env_extra=env).wait()
    status = spawn("god", "status", "--json", env_extra=env)
    assert status.wait() == 0, status.text()
    queues = json.loads(status.out[0])["queues"]
    assert {k: (v["waiting"], v["done"]) for k, v in queues.items()} == {"images": (3, 0), "pages": (0, 3)}
    text = spawn("god", "status", env_extra=env)
    assert text.wait() == 0
    assert any(line.strip().startswith("queue images: waiting 3, running 0, scheduled 0, blocked 0, done 0") for line in text.out), \
        text.out
    samples = scrape(url)
    assert samples['god_queue_tasks{queue="images",state="waiting"}'] == 3
    assert samples['god_queue_tasks{queue="pages",state="done"}'] == 3
    assert 'god_queue_oldest_waiting_task_age_seconds{queue="images"}' in samples
