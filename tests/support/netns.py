"""Hosts of a test's own: network namespaces on one switch (a bridge in a namespace of its own),
joined by veth pairs, with addresses from 198.18.0.0/15 (the range set aside for tests like
this). Needs root and iproute2; the fixture removes everything it made, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

SUBNET = "198.18.0"  # from 198.18.0.0/15

#: For tests that need hosts: skipped where namespaces cannot be made (CI runs as root).
needs_namespaces = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                      reason="needs root and iproute2 (ip) to make network namespaces")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Network:
    """Hosts (network namespaces) on one switch (a bridge in a namespace of its own)."""

    def __init__(self) -> None:
        self.tag = f"gt{os.getpid() % 100000}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, int] = {}  # namespace -> host number (its switch port and address)
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, name: str) -> tuple[str, str]:
        """A new host on the switch; returns (namespace, address)."""
        n = len(self.hosts) + 1
        ns = f"{self.tag}-{name}"
        ip("netns", "add", ns)
        self.hosts[ns] = n
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{n}", "netns", self.switch)
        ip("-n", self.switch, "link", "set", f"port{n}", "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        return ns, f"{SUBNET}.{n}"

    def link(self, ns: str, up: bool) -> None:
        """Plug a host's cable in or pull it out (its port on the switch)."""
        ip("-n", self.switch, "link", "set", f"port{self.hosts[ns]}", "up" if up else "down")

    def remove(self) -> None:
        """End every process left in our namespaces, then delete them."""
        for ns in [*self.hosts, self.switch]:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

