"""The operator's side: what people see of god, and the commands they give it.

The monitor that shows results and summary lines (``monitor``), the live view (``live``), the
status and summary lines (``lines``), Prometheus metrics (``metrics``), the last hour of figures
(``history``), the dashboard over HTTP with its pages (``web``, ``dashboard.html``,
``login.html``), and the commands that ask a running god (``commands``: status, limit, dead,
failed, cancel and the rest). It reads god's figures and calls the API; it keeps nothing a
restart needs, and shows a result only once the recorder has kept it.

May import: ``god.transport``, ``god.rules``, ``god.store``, ``god.defaults``, ``shared``; not the
journal: what people see never drives what is kept.
"""
