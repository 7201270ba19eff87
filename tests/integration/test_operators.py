"""Operators are people with tokens of their own (god --keys): the dashboard's tokens come from
the table, a viewer's cannot act, a client's key makes none god takes, god never writes one to
its log, and every operator action leaves an audit line: who, what, from where."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.gods import God
from tests.support.helpers import Proc, wait_until
from tests.support.principals import new_keys, write_table
from tests.support.web import Dashboard, login_address

pytestmark = pytest.mark.timeout(60)

ROLES = {"ops": ["operator"], "watch": ["viewer"], "ingest": ["producer"], "worker": ["consumer"]}


def test_the_dashboards_tokens_come_from_the_table_and_actions_are_audited(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    keys = new_keys(*ROLES)
    table = write_table(tmp_path / "keys.json", keys, ROLES)
    g = start_god("--keys", str(table), "--http", "0")
    ops, watch = Dashboard(login_address(g, keys["ops"])), Dashboard(login_address(g, keys["watch"]))
    as_ops = {**env, "GOD_AUTHKEY": keys["ops"].decode(), "GOD_ADDRESS": g.address}
    put = spawn("producer", "--rounds", "1", environment={**as_ops, "GOD_AUTHKEY": keys["ingest"].decode()})
    assert put.wait(30) == 0, put.text()  # (the queue the operator pauses)
    # An operator logs in with their own token and acts; the action is audited, with where from
    ops.login()
    assert ops.request("POST", "/api/pause", {"queue": "default"}, csrf=ops.csrf)[0] == 200
    g.proc.wait_for(r"audit: ops from 127\.0\.0\.1 \(dashboard\): pause\('default', True\)", stream="err")
    # and so is one made with the command line
    resume = spawn("god", "resume", "default", environment=as_ops)
    assert resume.wait(30) == 0, resume.text()
    g.proc.wait_for(r"audit: ops from 127\.0\.0\.1:\d+: pause\('default', False\)", stream="err")
    # A viewer sees, and may not act: its page offers no actions, and god refuses them
    watch.login()
    assert watch.api("GET", "/api/session") == {"csrf": None, "principal": "watch", "actions": False}
    assert watch.api("GET", "/api/status")["waiting"] == 10
    status, _, body = watch.request("POST", "/api/pause", {"queue": "default"}, csrf=watch.csrf)
    assert status == 403 and json.loads(body)["error"] == (
        "watch may not call pause: it needs the role operator, and watch has viewer")
    status, _, _ = watch.request("POST", "/api/purge", {}, bearer=watch.token)
    assert status == 403
    # A producer's or consumer's key makes no token god takes
    for name in ("ingest", "worker"):
        client = Dashboard(login_address(g, keys[name]))
        assert client.request("POST", "/api/login", {"token": client.token})[0] == 401
        assert client.request("GET", "/api/status", bearer=client.token)[0] == 401
    # and god wrote no token anywhere: 'god url' prints the operator's login address from their key
    text = g.proc.text()
    assert "#token=" not in text and all(Dashboard(login_address(g, k)).token not in text for k in keys.values())
    url = spawn("god", "url", environment=as_ops)
    assert url.wait(30) == 0 and url.out == [login_address(g, keys["ops"])]
    # When the viewer is removed from the table, its session ends with the next request
    write_table(table, keys, {k: v for k, v in ROLES.items() if k != "watch"})
    g.proc.signal(signal.SIGHUP)
    wait_until(lambda: "read again: 3 principals" in g.proc.text(), 10, "god to read the table again")
    assert watch.request("GET", "/api/status")[0] == 401
    # and every action in the log names who made it
    audits = [line for line in g.proc.err if "audit:" in line]
    assert audits and all(re.search(r"audit: ops from ", line) for line in audits), audits


def test_without_a_table_god_shows_the_login_address_to_a_terminal_only(start_god: Callable[..., God]) -> None:
    g = start_god("--http", "0")  # (its output is a pipe here, as under systemd)
    line = g.proc.wait_for(r"^dashboard: .*$").group(0)
    assert line.endswith("(its login address: python -m god url, with the key)") and "#token=" not in g.proc.text()
