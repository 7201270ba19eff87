"""God's figures for Prometheus: ``--metrics-port`` serves them as text on GET /metrics.

Counts only, no payloads or results, and no key: bind it where only your monitoring
reaches (it listens on god's host).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.errors import AddressInUseError, ConfigError
from shared.states import TaskState
from shared.stats import Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_CONNECTIONS = 64  # connections the dashboard and /metrics serve at once (a thread each)
PER_ADDRESS = 16  # of which from one address (a browser opens 6)
#: The states god_tasks and god_queue_tasks count, in a task's order.
STATES = tuple(s.value for s in TaskState)

#: (name, type, help, stats key or None): one sample each, from god's stats.
_SIMPLE = (
    ("god_tasks_accepted_total", "counter", "Tasks accepted from producers.", "accepted"),
    ("god_duplicates_total", "counter", "Results dropped because the task already had one.", "duplicates"),
    ("god_redeliveries_total", "counter", "Tasks served again after their consumer died or was lost.", "redelivered"),
    ("god_retries_total", "counter", "Failed tasks served again (producer --retries).", "retried"),
    ("god_dead_letters_total", "counter", "Tasks given up after too many attempts.", "dead"),
    ("god_producers_forgotten_total", "counter", "Producers not heard from for the dedupe window, forgotten.",
     "producers_forgotten"),
    ("god_unknown_producer_puts_total", "counter",
     "Puts from producers god did not remember (past the dedupe window): a re-sent one would run again.",
     "unknown_puts"),
    ("god_queue_depth", "gauge", "Tasks waiting on their queues to be served.", "waiting"),
    ("god_queue_capacity", "gauge", "Tasks that may wait before producers are made to wait.", "capacity"),
    ("god_oldest_waiting_task_age_seconds", "gauge", "Age of the oldest task never served yet.", "oldest_waiting_s"),
    ("god_consumers_alive", "gauge", "Consumers whose heartbeat god hears.", "consumers_alive"),
    ("god_uptime_seconds", "gauge", "Seconds since god started.", "uptime_s"),
    ("god_connections", "gauge", "Connections god serves now.", "connections"),
    ("god_connections_refused_total", "counter", "Connections refused: wrong key, or over --max-connections.",
     "refused"),
)


def render(stats: Stats, rate: float) -> str:
    """God's stats in the Prometheus text format."""
    out = [
        "# HELP god_tasks Tasks by state: waiting (on a queue), running (held by a consumer), scheduled (waiting "
        "for their time), blocked (waiting for other tasks' results), done, failed, dead.",
        "# TYPE god_tasks gauge",
    ]
    for state in STATES:
        out.append(f'god_tasks{{state="{state}"}} {stats.get(state, 0)}')
    out += [
        "# HELP god_results_per_second Results recorded per second, over the last second or so.",
        "# TYPE god_results_per_second gauge",
        f"god_results_per_second {rate:.3f}",
    ]
    for name, kind, text, key in _SIMPLE:
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {stats.get(key, 0)}"]
    out += ["# HELP god_queue_tasks Tasks of each queue by state.", "# TYPE god_queue_tasks gauge"]
    for name, q in sorted(stats["queues"].items()):
        for state in STATES:
            out.append(f'god_queue_tasks{{queue="{_label(name)}",state="{state}"}} {q.get(state, 0)}')
    out += ["# HELP god_queue_oldest_waiting_task_age_seconds Age of the oldest task waiting on each queue.",
            "# TYPE god_queue_oldest_waiting_task_age_seconds gauge"]
    out += [f'god_queue_oldest_waiting_task_age_seconds{{queue="{_label(name)}"}} {q["oldest_waiting_s"]:.3f}'
            for name, q in sorted(stats["queues"].items())]
    for key, text in (("wanted_workers", "Workers each queue's backlog wants now (its tasks times a task's "
                                             "measured time, over 30 s of work a worker): for autoscalers."),
                      ("wanted_consumers", "Consumers that give those workers, at the workers each serving it has.")):
        out += [f"# HELP god_queue_{key} {text}", f"# TYPE god_queue_{key} gauge"]
        out += [f'god_queue_{key}{{queue="{_label(name)}"}} {q.get(key, 0)}' for name, q in sorted(stats["queues"].items())]
    out += ["# HELP god_queue_paused 1 while a queue is paused (python -m god pause): nothing starts from it.",
            "# TYPE god_queue_paused gauge"]
    out += [f'god_queue_paused{{queue="{_label(name)}"}} {int(q["paused"])}' for name, q in sorted(stats["queues"].items())]
    out += ["# HELP god_consumer_done_total Tasks done by each consumer.", "# TYPE god_consumer_done_total counter"]
    for c in stats["consumers"]:
        out.append(f'god_consumer_done_total{{consumer="{_label(c["name"])}",host="{_label(c["host"])}"}} {c["done"]}')
    out += ["# HELP god_consumer_oldest_held_task_age_seconds How long each consumer has held its oldest task "
            "not done (running, or next in a worker): a stuck task shows here.",
            "# TYPE god_consumer_oldest_held_task_age_seconds gauge"]
    for c in stats["consumers"]:
        out.append(f'god_consumer_oldest_held_task_age_seconds{{consumer="{_label(c["name"])}",'
                   f'host="{_label(c["host"])}"}} {c["oldest_held_s"]:.3f}')
    return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _CappedServer(ThreadingHTTPServer):
    """Serves each connection in a thread, at most HTTP_CONNECTIONS at once and PER_ADDRESS from
    one address: a connection over either is closed at once, before it costs a thread (a
    thread each, uncapped, let anyone who reached the port grow god by the hundred)."""

    daemon_threads = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._open: dict[str, int] = {}  # address -> connections served now
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        who = str(client_address[0])
        with self._open_lock:
            if sum(self._open.values()) >= HTTP_CONNECTIONS or self._open.get(who, 0) >= PER_ADDRESS:
                self.shutdown_request(request)
                return
            self._open[who] = self._open.get(who, 0) + 1
        try:
            super().process_request(request, client_address)
        except Exception:
            self._done(who)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(str(client_address[0]))

    def _done(self, who: str) -> None:
        with self._open_lock:
            left = self._open.get(who, 0) - 1
            if left > 0:
                self._open[who] = left
            else:
                self._open.pop(who, None)


def serve_http(host: str, port: int, handler: type[BaseHTTPRequestHandler], flag: str,
               wrap: Callable[[socket.socket], socket.socket] | None = None) -> ThreadingHTTPServer:
    """An HTTP server on host:port, serving in daemon threads (capped: ``_CappedServer``);
    ``wrap`` wraps its socket (TLS).

    Raises:
        AddressInUseError, ConfigError: it cannot listen there (``flag`` names the option).
    """
    where = f"{host}:{port}"
    try:
        server = _CappedServer((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise AddressInUseError(f"{flag}: cannot listen on {where}: the port is already in use") from None
        raise ConfigError(f"{flag}: cannot listen on {where}: {e.strerror or e}") from None
    if wrap is not None:
        server.socket = wrap(server.socket)
    threading.Thread(target=server.serve_forever, name=f"god-http-{server.server_address[1]}", daemon=True).start()
    return server


class MetricsServer:
    """An HTTP server in a daemon thread that answers GET /metrics with ``render(*figures())``."""

    def __init__(self, host: str, port: int, figures: Callable[[], tuple[Stats, float]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                body = render(*figures()).encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not news

        self.server = serve_http(host, port, Handler, "--metrics-port")
        self.port = int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
