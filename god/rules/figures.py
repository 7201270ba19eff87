"""What god tells of itself: every count (``stats``, for the monitor, status, metrics and the
dashboard) and where one task is (``python -m god task ID``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from god.rules.state import State
from god.rules.wanted import consumers_wanted, workers_wanted
from god.store.batches import Batch, Queue, Slice
from god.store.peers import ConsumerState
from shared import resources
from shared.records import split_id
from shared.resources import Res
from shared.states import TaskState
from shared.stats import ConsumerFigures, ProducerFigures, QueueFigures, Stats


# What ``task_state`` says, as plain strings: clients of any version read them.
BLOCKED, DEAD, DONE = TaskState.BLOCKED.value, TaskState.DEAD.value, TaskState.DONE.value
RUNNING, SCHEDULED, WAITING = TaskState.RUNNING.value, TaskState.SCHEDULED.value, TaskState.WAITING.value


class Figures:
    """Snapshots of the state, taken under its lock."""

    def __init__(self, state: State, *, more: Callable[[], dict[str, int]] = dict) -> None:
        """Args:
            more: more counts for ``stats`` (the door's connections and refusals).
        """
        self.state = state
        self.more = more

    def unfit_for(self, timeout_s: float, now: float) -> list[tuple[Batch, int, int, str]]:
        """The waiting runs of batches that have fit no consumer serving their queue for
        timeout_s, with why (lock held); a batch that fits one again starts over."""
        out = []
        for name, q in self.state.queues.items():
            for s, why in self._needing(name, q):
                b = s.batch
                if why is None:
                    b.unfit_since = None
                elif b.unfit_since is None:
                    b.unfit_since = now
                elif now - b.unfit_since >= timeout_s:
                    out += [(b, lo, hi, why) for lo, hi in b.undone(s.lo, s.hi)]
        return out

    def _unfit(self, name: str, q: Queue) -> tuple[int, str | None]:
        """A queue's waiting tasks that fit no consumer serving it (lock held): how many, and why
        (the first such batch's)."""
        n, first = 0, None
        for s, why in self._needing(name, q):
            if why is not None:
                n += s.hi - s.lo
                first = first or why
        return n, first

    def _needing(self, name: str, q: Queue) -> Iterator[tuple[Slice, str | None]]:
        """A queue's waiting slices whose tasks need resources, each with why it fits no
        consumer serving the queue (None: one has room for it, or none serves it)."""
        serving: list[ConsumerState] | None = None
        for level in q.levels:
            for s in level:
                if s.batch.resources is not None:
                    if serving is None:
                        serving = list(self.state.peers.serving(name))
                    yield s, fits_nowhere(s.batch.resources, serving)

    def stats(self) -> Stats:
        """A snapshot of every count."""
        st = self.state
        with st.lock:
            now = st.now()
            queues: dict[str, QueueFigures] = {}
            for name, q in st.queues.items():
                oldest = q.oldest()
                queues[name] = {
                    "waiting": q.waiting, "running": q.running, "done": q.done, "failed": q.failed,
                    "dead": q.dead, "scheduled": q.scheduled, "blocked": q.blocked, "oldest_waiting_s": 0.0 if oldest is None else now - oldest,
                    "rate_limit": q.limit.rate if q.limit is not None else None, "paused": q.paused,
                    "consumers": sum(1 for _ in st.peers.serving(name)),
                    "pending": q.waiting, "in_flight": q.running, "unfit": 0, "unfit_why": None, "task_s": None,
                    "wanted_workers": 0, "wanted_consumers": 0,
                }
                queues[name]["unfit"], queues[name]["unfit_why"] = self._unfit(name, q)
                serving = [c.processes * c.concurrency for c in st.peers.serving(name)]
                workers = workers_wanted(q.waiting, q.running, q.task_s)
                f = queues[name]
                f["task_s"], f["wanted_workers"] = q.task_s, workers
                f["wanted_consumers"] = consumers_wanted(workers, sum(serving) / len(serving) if serving else 1.0)
            oldest_all = max((f["oldest_waiting_s"] for f in queues.values()), default=0.0)
            consumers: list[ConsumerFigures] = [
                {"name": c.name, "host": c.host, "python": c.python, "processes": c.processes,
                 "concurrency": c.concurrency,
                 "alive": c.alive,
                 "running": (running := c.running()), "in_flight": running, "done": c.done, "failed": c.failed, "lost": c.lost,
                 "oldest_held_s": max((now - s.since for w in (c, *c.workers.values()) for s in w.leased
                                       if s.since), default=0.0),
                 "last_seen_s": now - c.last_seen, "queues": list(c.queues), "cache": c.cache}
                for c in st.peers.consumers.values() if c.parent is None
            ]
            producers: list[ProducerFigures] = [
                {"name": p.name, "host": p.host, "python": p.python, "put": p.put, "duplicates": p.duplicates,
                 "last_seen_s": now - p.last_seen}
                for p in st.peers.producers.values()
            ]
            counts = st.counts
            held = st.values.figures() if st.values is not None else {}
            stats: Stats = {
                "accepted": counts["accepted"], "done": counts["done"], "failed": counts["failed"],
                "dead": counts["dead"], "duplicates": counts["duplicates"], "redelivered": counts["redelivered"],
                "handed_out": counts["handed_out"], "retried": counts["retried"], "waiting": st.waiting,
                "producers_forgotten": counts["forgotten"], "unknown_puts": counts["unknown_puts"],
                "dead_kept": len(st.dead), "cancelled": counts["cancelled"], "unleased": counts["unleased"],
                "scheduled": sum(q.scheduled for q in st.queues.values()), "blocked": st.blocked,
                "running": (running := sum(q.running for q in st.queues.values())), "capacity": st.capacity,
                "pending": st.waiting, "in_flight": running,
                "oldest_waiting_s": oldest_all, "uptime_s": now - st.started,
                "consumers_alive": st.peers.alive(), "connections": 0, "refused": 0,
                "consumers": consumers, "producers": producers, "queues": queues,
                "values": held.get("values", 0), "values_bytes": held.get("values_bytes", 0),
                "values_in_bytes": held.get("values_in_bytes", 0), "values_out_bytes": held.get("values_out_bytes", 0),
            }
        more = self.more()
        stats["connections"] = more.get("connections", 0)
        stats["refused"] = more.get("refused", 0)
        return stats

    def task_state(self, tid: str) -> dict[str, Any]:
        """Where a task is: blocked (on which tasks), waiting, scheduled, running (on which
        consumer), dead, or done (its results line tells done from failed); its queue, task and
        attempts where god holds them; the last part of its output, if it wrote (god/store/outputs.py).

        Raises:
            ValueError: not a task id, or a task god does not know.
        """
        producer, seq = split_id(tid)
        with self.state.lock:
            tail = self.state.outputs.tail(producer, seq)
            try:
                where = self._where(tid, producer, seq)
            except ValueError:
                if tail is None:
                    raise
                where = {"id": tid, "state": DONE}  # (its batch forgotten, its output kept)
        return where if tail is None else {**where, "output": tail}

    def _where(self, tid: str, producer: str, seq: int) -> dict[str, Any]:
        """task_state's answer but the output (lock held)."""
        st = self.state
        d = st.dead.get(tid)
        if d is not None:
            return {"id": tid, "state": DEAD, "queue": d.queue, "task": d.task, "attempts": d.attempts,
                    "reason": d.reason}
        b = st.batch_of(producer, seq)
        if b is None:
            if seq <= st.upto.get(producer, 0):
                return {"id": tid, "state": DONE}
            raise ValueError(f"god knows no task {tid}: none of {producer}'s tasks up to {seq} came here, "
                             f"or they finished more than --dedupe-window ago")
        i = seq - b.first
        out: dict[str, Any] = {"id": tid, "queue": b.queue, "task": b.task, "priority": b.priority}
        if b.origin is not None:
            out["requeued_from"] = b.origin[i]
        if b.after is not None:
            out["after"] = list(b.after)
        if b.done[i]:
            return {**out, "state": DONE}
        if b.missing:
            return {**out, "state": BLOCKED, "on": st.graph.blocked_on(b)}
        s = next((s for s in b.out if s.lo <= i < s.hi), None)
        if s is not None:
            return {**out, "state": RUNNING, "attempts": s.tries,
                    "consumer": s.owner.top.name if s.owner is not None else None}
        s = next((s for s in b.later if s.lo <= i < s.hi), None)
        if s is not None:
            due = next((at for at, _, t in st.scheduled if t is s), st.now())
            return {**out, "state": SCHEDULED, "attempts": s.tries, "due_in_s": max(0.0, due - st.now())}
        s = next((s for level in st.queues[b.queue].levels for s in level if s.batch is b and s.lo <= i < s.hi),
                 None)
        why = fits_nowhere(b.resources, list(st.peers.serving(b.queue))) if b.resources is not None else None
        return {**out, "state": WAITING, "attempts": s.tries if s is not None else 0,
                **({"resources": dict(b.resources)} if b.resources is not None else {}),
                **({"fits": why} if why is not None else {})}


def fits_nowhere(need: Res, serving: list[ConsumerState]) -> str | None:
    """Why tasks that need ``need`` fit no consumer of those serving their queue, or None (one
    has it all; or none serves the queue: they wait for consumers, as any task does)."""
    if not serving or any(not resources.lacking(need, c.resources) for c in serving):
        return None
    largest = {name: max(c.resources.get(name, 0.0) for c in serving) for name, _ in need}
    short = resources.lacking(need, largest)
    has = ", ".join(f"{name}={resources.shown({name: largest[name]}).partition('=')[2]}" if largest[name] else
                    f"no {name}" for name, _ in short)
    return f"fits nowhere: needs {resources.shown(need)}; the largest has {has}"
