"""The door's budgets (god/transport/door.py): connections that shake hands have their own,
per address and in all, and never take a client's place; clients have --max-connections."""

from __future__ import annotations

from typing import Any

from god.transport.door import Door


class Conn:
    """What the door knows of a connection: where it came from (no socket: nothing to close)."""

    def __init__(self, host: str, port: int) -> None:
        self.peer = (host, port)

    def fileno(self) -> int:
        return -1

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        raise EOFError

    def recv(self) -> Any:
        raise EOFError


def test_one_address_shakes_hands_at_most_so_often_at_once() -> None:
    door = Door(shaking=100, shaking_per_address=3)
    assert [door.admit(Conn("10.0.0.1", p)) for p in range(4)] == [True, True, True, False]
    assert door.admit(Conn("10.0.0.2", 1))  # another address has its own
    assert door.figures() == {"connections": 4, "refused": 1}


def test_past_the_budget_the_oldest_handshake_makes_room_and_clients_keep_theirs() -> None:
    door = Door(shaking=4, shaking_per_address=4, max_connections=2)
    client = Conn("10.0.0.9", 1)
    assert door.admit(client) and door.shaken(client)  # a client: out of the handshakes' budget
    first = Conn("10.0.1.1", 1)
    door.admit(first)
    for i in range(2, 5):
        door.admit(Conn(f"10.0.1.{i}", 1))
    assert door.figures()["connections"] == 5
    # When one more comes, the oldest that still shakes hands goes, never the client
    newest = Conn("10.0.2.1", 1)
    assert door.admit(newest)
    assert door.figures()["connections"] == 5
    assert not door.shaken(first)  # dropped: its handshakes count for nothing now
    assert door.shaken(newest)
    # and clients are at most --max-connections
    late = Conn("10.0.3.1", 1)
    door.admit(late)
    assert not door.shaken(late)
    assert door.figures()["refused"] == 1
