"""The store: what god keeps in memory of tasks and peers, and nothing more.

Batches and the slices of them that wait or are leased (``batches``), what god knows of each
consumer and producer (``peers``), the tasks given up on (``dead_letters``), the results kept
for producers that wait for theirs (``mailboxes``), and the schedules' records and crontab times
(``schedules``). Plain containers with the operations that keep them consistent; which task
goes where, and when, is decided in ``god.rules``.

May import: ``god.defaults``, ``shared``. Nothing else of god.
"""
