"""God's settings that ``python -m god`` offers as flags, with their defaults: one place that both
the command line (which must start without loading the server) and the rooms that use them read."""

from __future__ import annotations

from shared import records

CAPACITY = 1_000_000  # tasks waiting, all queues together, before producers are made to wait
MAX_PAYLOAD = records.MAX_PAYLOAD  # bytes of a put's payloads, as one blob (--max-payload)
FRAME_OVERHEAD = records.FRAME_OVERHEAD  # bytes a request may hold beyond that: its record
#: Characters of a payload's JSON a results line holds; a longer one is shown by its size and
#: digest (shared.records.payload_json): lines a person and a JSON reader take in one go.
RESULTS_PAYLOAD_MAX = 64 * 1024
#: Seconds god remembers a producer it no longer hears from: a put it sends again within
#: that time is recognised as sent before. Its client gives up after --give-up-after (180 s
#: by default), so a re-send comes long before; the memory is a dict entry per producer.
DEDUPE_WINDOW_S = 86_400.0
LEASE_S = 5.0  # seconds without a heartbeat before a consumer's tasks are served again
WARN_AFTER_S = 600.0  # seconds a consumer may hold a task before god warns (once) that it is stuck
MAX_ATTEMPTS = 3  # leases of one task whose consumer dies before it is dead-lettered
DEAD_KEEP = 10_000  # dead letters kept (--dead-keep)
MAX_CONNECTIONS = 1000  # clients (connections through their handshakes) god serves at once
HANDSHAKE_S = 10.0  # seconds a new connection has for the TLS and authkey handshakes
IDLE_S = 300.0  # seconds an authenticated connection may wait without a request
