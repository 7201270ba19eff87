"""The transport: how a client's call reaches the rules and its answer goes back.

Which connections god serves, for how long, and what it says of the rest (``door``); the one
selector thread that reads, frames and answers every client (``hub``); the manager server
with its registered names (``server``); calls that wait for tasks, room, results or a commit
(``waits``); what clients may call (``api``: each call answers at once or returns a ``Wait``);
and the tutorial's queue views (``views``).

May import: ``god.rules``, ``god.journal``, ``god.store``, ``god.defaults``, ``shared``.
"""
