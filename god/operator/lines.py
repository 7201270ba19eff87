"""God's figures as lines people read: ``python -m god status``, and the summary line god prints
while results come faster than a person can follow. No rich and no server here: the commands
that ask god import this before they connect."""

from __future__ import annotations

from shared.log import count
from shared.stats import ConsumerFigures, ProducerFigures, Stats


def summary_line(stats: Stats, rate: float) -> str:
    """One line of counts: done, waiting, running, failed, dead, rate, consumers alive."""
    return (
        f"done {stats['done']} | waiting {stats['waiting']} | running {stats['running']} | "
        f"failed {stats['failed']} | dead {stats['dead']} | {rate:,.0f}/s | "
        f"consumers alive {stats['consumers_alive']}"
    )


def _python(peer: ConsumerFigures | ProducerFigures) -> str:
    return f" (Python {peer['python']})" if peer.get("python") else ""


def status_text(where: str, stats: Stats) -> str:
    """God's figures for a person: the summary line, then a line per queue, consumer and producer."""
    lines = [f"god at {where}, up {stats['uptime_s']:.0f}s: " + summary_line(stats, 0.0).rsplit(" | ", 2)[0]
             + f" | duplicates {stats['duplicates']} | consumers alive {stats['consumers_alive']}"
             + f" | connections {stats['connections']} | refused {stats['refused']}"]
    for name, q in sorted(stats["queues"].items()):
        lines.append(f"  queue {name}: waiting {q['waiting']}, running {q['running']}, scheduled {q['scheduled']}, "
                     f"blocked {q['blocked']}, done {q['done']}, "
                     f"failed {q['failed']}, dead {q['dead']}, oldest waiting {q['oldest_waiting_s']:.1f}s, "
                     f"consumers {q['consumers']}"
                     + (f", wants {count(q['wanted_workers'], 'worker')} ({q['wanted_consumers']} consumers)"
                        if q.get("wanted_workers") else "")
                     + (f", at most {q['rate_limit']:g} a second" if q["rate_limit"] is not None else "")
                     + (", paused" if q["paused"] else "")
                     + (f"; {q['unfit']} {q['unfit_why']}" if q.get("unfit") else ""))
    for c in stats["consumers"]:
        lines.append(f"  consumer {c['name']} on {c['host']}{_python(c)}: {count(c['processes'], 'process', 'processes')}, "
                     f"{'alive' if c['alive'] else 'lost'}, done {c['done']}, failed {c['failed']}, "
                     f"running {c['running']}, queues {','.join(c['queues'])}, last heard {c['last_seen_s']:.1f}s ago"
                     + (f", oldest task held {c['oldest_held_s']:.1f}s" if c["running"] else ""))
    for p in stats["producers"]:
        lines.append(f"  producer {p['name']} on {p['host']}{_python(p)}: put {p['put']}, last heard {p['last_seen_s']:.1f}s ago")
    return "\n".join(lines)
