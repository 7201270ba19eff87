"""The live view: god's figures as rich tables, for god's terminal and ``god status --watch``."""

from __future__ import annotations


from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from shared.stats import Stats


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds / 3600:.0f}h{seconds % 3600 / 60:02.0f}m"


def render(stats: Stats, rate: float, where: str = "") -> RenderableType:
    """Totals, then a row per queue, per consumer and per producer."""
    totals = Table.grid(padding=(0, 3))
    for _ in range(4):
        totals.add_column(justify="left")
    totals.add_row(
        f"[bold]done[/] {stats['done']:,}", f"[bold red]failed[/] {stats['failed']:,}",
        f"[bold red]dead[/] {stats['dead']:,}", f"[bold]rate[/] {rate:,.0f}/s",
    )
    totals.add_row(
        f"[bold]waiting[/] {stats['waiting']:,} / {stats['capacity']:,}", f"[bold]running[/] {stats['running']:,}",
        f"[bold]scheduled[/] {stats['scheduled']:,}", f"[bold]oldest waiting[/] {_age(stats['oldest_waiting_s'])}",
    )
    totals.add_row(
        f"[bold]duplicates[/] {stats['duplicates']:,}", f"[bold]redelivered[/] {stats['redelivered']:,}",
        f"[bold]retried[/] {stats['retried']:,}", f"[bold]blocked[/] {stats['blocked']:,}",
    )
    queues = Table(title="queues", title_justify="left", expand=False)
    for name, justify in (("queue", "left"), ("waiting", "right"), ("running", "right"), ("scheduled", "right"),
                          ("blocked", "right"), ("done", "right"), ("failed", "right"), ("dead", "right"), ("oldest waiting", "right"),
                          ("consumers", "right"), ("limit", "right")):
        queues.add_column(name, justify=justify)  # type: ignore[arg-type]
    for qname, q in sorted(stats["queues"].items()):
        limit = q["rate_limit"]
        name_cell = Text(f"{qname} (paused)", style="yellow") if q["paused"] else Text(qname)
        if q.get("unfit"):
            name_cell.append(f" ({q['unfit']:,} {q['unfit_why']})", style="red")
        queues.add_row(name_cell, f"{q['waiting']:,}", f"{q['running']:,}", f"{q['scheduled']:,}",
                       f"{q['blocked']:,}", f"{q['done']:,}",
                       f"{q['failed']:,}", f"{q['dead']:,}", _age(q["oldest_waiting_s"]), str(q["consumers"]),
                       f"{limit:g}/s" if limit is not None else "")
    consumers = Table(title=f"consumers ({stats['consumers_alive']} alive)", title_justify="left", expand=False)
    for name, justify in (("consumer", "left"), ("host", "left"), ("queues", "left"), ("processes", "right"),
                          ("done", "right"),
                          ("failed", "right"), ("running", "right"), ("oldest held", "right"), ("heartbeat", "right"),
                          ("state", "left")):
        consumers.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in stats["consumers"]:
        consumers.add_row(
            c["name"], c["host"], ",".join(c["queues"]), str(c["processes"]), f"{c['done']:,}", f"{c['failed']:,}", str(c["running"]),
            _age(c["oldest_held_s"]) if c["running"] else "",
            f"{_age(c['last_seen_s'])} ago", Text("alive", style="green") if c["alive"] else Text("lost", style="red"),
        )
    producers = Table(title="producers", title_justify="left")
    for name, justify in (("producer", "left"), ("host", "left"), ("put", "right"), ("duplicates", "right"),
                          ("last heard", "right")):
        producers.add_column(name, justify=justify)  # type: ignore[arg-type]
    for p in stats["producers"]:
        producers.add_row(p["name"], p["host"], f"{p['put']:,}", f"{p['duplicates']:,}", f"{_age(p['last_seen_s'])} ago")
    title = Text(f"god {where}  up {_age(stats['uptime_s'])}", style="bold")
    return Group(title, totals, queues, consumers, producers)


def render_text(stats: Stats, rate: float, where: str = "", width: int = 120) -> str:
    """The live view as plain text (for tests and logs)."""
    console = Console(width=width, record=True, file=None, force_terminal=False, color_system=None)
    with console.capture() as capture:
        console.print(render(stats, rate, where))
    return capture.get()
