"""The rules: what happens to tasks, as rule sets over one state and one lock.

``state`` holds the queues, batches, per-producer marks and counts, and the operations several
rule sets share; ``broker`` puts the rule sets together: taking puts (``intake``), handing tasks
out (``leases``), results (``acks``), failures tried again and tasks served at their time
(``retries``), peers coming, beating, leaving, lost and forgotten (``peers``), what a peer that
left or was lost held (``redelivery``), tasks given up on
(``dead_letters``), operator controls (``controls``), periodic tasks (``schedules``), tasks that
wait for others (``graph``), the tutorial's hand-out (``handout``) and every count
(``figures``). No sockets, no threads, no waiting: calls return at once, the clock is
injected, and each rule set's unit tests are named after it (``tests/unit/test_leases.py``).

May import: ``god.store``, ``god.defaults``, ``shared``. The journal is reached only through
the protocols the rules define.
"""
