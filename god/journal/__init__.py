"""The journal: what god keeps on disk, so a restarted god loses nothing it confirmed.

What god tells it (``journal``: accepted batches, settled runs, attempts, dead letters,
mailboxes, outcomes, schedules and controls), the thread that commits them in groups
(``writer``), its tables (``schema``),
opening a journal an earlier god wrote (``migrations``), what a journal holds when god starts
(``recovery``), the results file (``results_file``), and the recorder that writes results lines
to that file first and then the runs they settle to the journal (``recorder``).

The rules tell the journal what changed through small protocols of their own (``JournalLike``
in ``god.rules.state``); the journal never calls the rules.

May import: ``god.store``, ``god.defaults``, ``shared``.
"""
