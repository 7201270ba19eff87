"""What the tests share: real processes and their output, a god started for a test, the core
driven through its API with a fake clock, task functions for consumers, the tutorial's own
clients, certificates, relays, a browser, installed wheels, systemd units and a Slurm cluster.

Tests import from here, never from another test module.
"""
