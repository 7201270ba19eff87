"""Mailboxes: results kept for the producers that wait for them, across a restart of god."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


from god.journal.recorder import Recorder
from god.journal.journal import Journal
from shared.records import G_KEEP, V_VALUE
from tests.support.core import Core, restarted, seqs


def waiting_producer(core: Core, name: str = "p") -> None:
    core.call("hello", name, "producer", {"host": "h", "results": True}).result()


def mail(core: Core, confirmed: int = 0, name: str = "p") -> list[tuple[int, tuple[int, int, list[Any]]]]:
    """What the producer's results call gets: (number, (lo, hi, values)) of each run."""
    posted, _ = core.call("results_for", name, core.broker.state.run, confirmed, 100).result()
    return [(number, (lo, hi, [v[V_VALUE] for v in pickle.loads(blob)])) for number, (lo, hi, blob, _, _) in posted]


def journaled(core: Core, journal: Journal, results: Path) -> None:
    """The monitor's round: results to the file, then the journal; wait for the commit."""
    record = Recorder(core.broker, results_path=results, journal=journal)
    record.close()  # (takes what is there first)
    journal.wait(journal.ticket)


def test_results_not_confirmed_survive_a_restart_and_so_does_the_wait_for_more(
    journal: Journal, tmp_path: Path
) -> None:
    core = Core(journal=journal)
    waiting_producer(core)
    core.settle(core.put("p", [1, 2, 3]))
    core.settle(core.put("p", [4, 5]))
    grants = core.lease("c", 3)
    assert all(g[G_KEEP] for g in grants)
    core.ack("c", grants, value="v")
    journaled(core, journal, tmp_path / "r.jsonl")
    assert mail(core) == [(1, (1, 4, ["v", "v", "v"]))]

    # God is killed before the producer confirms them; a new god on the journal
    again, r, core2 = restarted(journal)
    try:
        assert r.mailboxes == {"p": [(1, 4, r.mailboxes["p"][0][2], "c", 1)]}
        assert mail(core2) == [(1, (1, 4, ["v", "v", "v"]))]
        # The tasks not done yet still send their values back, for the same producer
        rest = core2.lease("c", 5)
        assert seqs(rest) == [4, 5] and all(g[G_KEEP] for g in rest)
        core2.ack("c", rest, value="w")
        assert mail(core2, confirmed=1) == [(2, (4, 6, ["w", "w"]))]
    finally:
        again.close()


def test_confirmed_results_and_closed_mailboxes_leave_the_journal(journal: Journal, tmp_path: Path) -> None:
    core = Core(journal=journal)
    waiting_producer(core, "p")
    waiting_producer(core, "q")
    core.settle(core.put("p", [1, 2]))
    core.settle(core.put("q", [1]))
    core.ack("c", core.lease("c", 3))
    journaled(core, journal, tmp_path / "r.jsonl")
    assert len(mail(core, name="p")) == 1
    mail(core, confirmed=1, name="p")  # p has its results
    core.call("bye", "q").result()  # q left: its mailbox goes
    journal.wait(journal.ticket)

    again, r, core2 = restarted(journal)
    try:
        assert r.mailboxes == {"p": []}
        assert mail(core2, name="p") == [] and mail(core2, name="q") == []
    finally:
        again.close()


def test_a_result_posted_but_never_written_is_dropped_and_its_task_runs_again(journal: Journal) -> None:
    core = Core(journal=journal)
    waiting_producer(core)
    core.settle(core.put("p", [1, 2]))
    core.ack("c", core.lease("c", 2), value="first")
    journal.wait(journal.ticket)  # posted and journaled, but god died before the results file had the lines

    again, r, core2 = restarted(journal)
    try:
        assert r.mailboxes == {"p": []} and r.pending == 2
        core2.ack("c", core2.lease("c", 2), value="second")
        assert mail(core2) == [(1, (1, 3, ["second", "second"]))]  # one result per task, the one written
    finally:
        again.close()
