"""God: the coordinator. It serves the queues, hands tasks out and records results.

One call's trip, from ``Executor.submit`` in a program to the results file and back to its
future, with the module that does each step (god's own under ``god/``)::

    program                      god                                   consumer host
    ───────                      ───                                   ─────────────
    ex.submit(fn, x)
     producer/sender.py          pickles the call, seqs it
     producer/producer.py        batches puts, 16 in flight
     shared/caller.py  ── put ──▶ transport/door.py   handshake: key, TLS, limits
                                  transport/hub.py    one thread reads every frame
                                  transport/api.py    put_many: arguments checked
                                  rules/intake.py     dedupe, room on the queue
                                  rules/state.py      the batch on its queue, or
                                  rules/graph.py        blocked on its futures
                                  journal/journal.py  the batch committed
     ◀──────── confirmed ──────── transport/waits.py  the put answered after it
                                  rules/leases.py     slices to a worker ── lease ──▶ consumer/loop.py
                                                                                       consumer/callers.py
                                                                                       (fn loaded, run)
                                  rules/acks.py       first result wins ◀── ack ───── consumer/acks.py
                                  rules/state.py      recorded: outbox, mailbox,
                                                      what waits for it
                                  journal/recorder.py the line to the results file,
                                                      then its runs to the journal
     producer/mail.py ◀─ result ─ store/mailboxes.py  kept until the program confirms
     producer/futures.py         the future resolved: f.result()

Beside that trip: ``rules/retries.py`` serves failures again after their backoff,
``rules/redelivery.py`` serves again what a lost consumer held, ``rules/dead_letters.py``
gives tasks up, ``rules/controls.py`` and ``rules/schedules.py`` are the operator's knobs,
and ``operator/`` shows it all. ``service.py`` puts the wings together in god's process and
runs its loop (record, reap, show); ``cli.py`` is ``python -m god``; ``defaults.py`` holds the
settings' defaults, which every wing may read; ``trim.py`` hands freed memory back.

The wings, lowest first. Each ``__init__`` says what it holds and what it may import, which
is only wings below it (tests/unit/test_layout.py checks both):

    store      what is kept in memory: batches, peers, dead letters, mailboxes, schedules
    journal    what is kept on disk: the writer, schema, migrations, recovery, results file
    rules      the broker: rule sets over one state and one lock; no I/O, an injected clock
    transport  the door, the hub, the server, waits, and the API clients call
    operator   monitor, live view, status lines, metrics, history, dashboard, commands

Glossary:

    task         one call of a function on one payload, named ``PRODUCER/SEQ``; its result
                 is the first one god records. Its states: shared/states.py.
    batch        one put: a producer's run of seqs for one queue, task name, priority and
                 retry policy, with the payloads as the one blob the producer sent.
    slice        a run of a batch's tasks that waits on a queue, or is leased.
    lease        slices handed to a worker; held while its consumer heartbeats.
    ack          a worker's results for a run of a batch: lines, failures, values.
    outcome      what a task others wait for gave (graph), kept until the last is done.
    mailbox      the results kept for a producer that reads its own (an Executor, --wait).
    peer         a consumer, one of its workers, or a producer that god has heard from.
    dead letter  a task given up on, kept to be looked at, served again or purged.
    journal      god's SQLite file: what it accepted and settled, so a restart loses nothing.
"""
