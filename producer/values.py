"""A program's large values on their way to god (shared/values.py): each sent once, in chunks,
over a connection of its own (the calls' puts go pipelined on theirs), before the put that
names it. God keeps what this program sent while it is connected, and while a task names it.
"""

from __future__ import annotations

from typing import Any

from shared import values
from shared.client import GodClient
from shared.config import Settings


class ValueSender:
    """Sends the large values a program's calls name, each once (one thread at a time)."""

    def __init__(self, settings: Settings, name: str, host: str) -> None:
        self._settings, self.name, self._host = settings, name, host
        self._client: GodClient | None = None
        self._sent: set[str] = set()  # what god said it holds, in its run self._run
        self._run = ""
        self.bytes_sent = 0

    def send(self, found: dict[str, Any]) -> tuple[str, ...]:
        """Make sure god holds these values (digest: its pickle, or the value: shared.values.blob);
        their digests, for the put."""
        if self._client is None:
            self._client = GodClient(self._settings, name=self.name, role="producer", info={"host": self._host})
        client = self._client
        client.connect()
        run = str(client.server_info.get("run", ""))
        if run != self._run:  # a god that restarted may have let go of what it had
            self._sent.clear()
            self._run = run
        self.bytes_sent += values.upload(client, self.name, found, self._sent)
        return tuple(found)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
