"""Producers that wait for their results: the CLI's --wait and the Python API."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.tasks import square
from producer import connect
from shared import exitcodes
from tests.support.certs import make_certs
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, write_tasks

pytestmark = pytest.mark.timeout(60)


def test_wait_prints_the_results_and_fails_if_one_failed(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    env = addr_env(god)
    spawn("consumer", "--task", "tests.support.tasks:fail_on_13", "--processes", "1", env_extra=env)
    p = spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", [11, 12, 13, 14])), "--wait",
              env_extra=env)
    assert p.wait() == exitcodes.FAILED
    failing = [line for line in p.out if "failed (13): ValueError: 13 is unlucky" in line]
    assert len(failing) == 1
    assert sorted(line for line in p.out if line not in failing) == [square(11), square(12), square(14)]
    assert "1 of 4 tasks failed" in p.text()


def test_wait_writes_the_results_to_a_file_and_exits_0_when_all_succeed(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    env = addr_env(god)
    spawn("consumer", "--processes", "1", env_extra=env)
    out = tmp_path / "mine.jsonl"
    p = spawn("producer", "--rounds", "2", "--per-round", "5", "--interval", "0", "--wait", "--results", str(out),
              env_extra=env)
    assert p.wait() == 0, p.text()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 10 and all(r["ok"] and r["value"] == square(r["payload"]) for r in records)


def test_a_crawler_puts_work_it_finds_in_its_results(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given consumers whose task returns the links found on a page
    spawn("consumer", "--task", "tests.support.tasks:links", "--processes", "2", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_ADDRESS", god.address)
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    # When a program puts the first page, and every link it gets back, through the API
    visited = []
    with connect(results=True, give_up_after=10) as g:
        g.put(0)
        for result in g.results(timeout=30):
            assert result.ok, result.error
            visited.append(result.payload)
            g.put_many(result.value)
    # Then it has seen every page once, and its iteration ended when no task was outstanding
    assert sorted(visited) == list(range(31))


def test_the_file_task_reports_size_and_sha256_of_paths_on_a_shared_disk(
    god: God, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    files = {tmp_path / "a.bin": b"hello\n", tmp_path / "b.bin": bytes(range(256)) * 5000}
    for path, data in files.items():
        path.write_bytes(data)
    missing = tmp_path / "missing.bin"
    env = addr_env(god)
    src = write_tasks(tmp_path / "paths.jsonl", [str(p) for p in [*files, missing]])
    p = spawn("producer", "--from", str(src), "--wait", env_extra=env)
    c = spawn("consumer", "--task", "consumer.tasks:file_digest", "--processes", "1", "--burst", env_extra=env)
    assert c.wait() == 0, c.text()
    assert p.wait() == exitcodes.FAILED  # the missing file
    by_path = {r["payload"]: r for r in wait_for_results(god.results, 3)}
    for path, data in files.items():
        assert by_path[str(path)]["value"] == {"path": str(path), "size": len(data),
                                               "sha256": hashlib.sha256(data).hexdigest()}
    assert by_path[str(missing)]["ok"] is False and "FileNotFoundError" in by_path[str(missing)]["error"]


def test_connect_reads_the_key_file_and_tls_from_the_environment_as_the_cli_does(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], tmp_path: Path
) -> None:
    # Given god with TLS, and a program that has only GOD_ADDRESS, GOD_AUTHKEY_FILE and GOD_TLS_CA
    certs = make_certs(tmp_path / "certs")
    g = start_god("--tls-cert", str(certs.god_cert), "--tls-key", str(certs.god_key))
    key_file = tmp_path / "key"
    key_file.write_text(env.pop("GOD_AUTHKEY") + "\n")
    key_file.chmod(0o600)
    client_env = {**addr_env(g), "GOD_AUTHKEY_FILE": str(key_file), "GOD_TLS_CA": str(certs.ca)}
    spawn("consumer", "--processes", "1", env_extra=client_env)
    # When it puts tasks through producer.connect()
    p = spawn("tests.support.api_client", "4", "5", env_extra=client_env)
    # Then it reaches god and gets their results
    assert p.wait(30) == 0, p.text()
    assert sorted(p.out) == [square(4), square(5)]


def test_a_producer_that_fetched_ahead_puts_asks_and_leaves_without_waiting_for_that_fetch(
    god: God, spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a producer whose fetch for results, sent behind each put, would wait at god for
    # longer than the test's timeout, and no consumer yet: each fetch waits there
    import producer.mail

    monkeypatch.setattr(producer.mail, "RESULTS_WAIT_S", 600.0)
    monkeypatch.setenv("GOD_ADDRESS", god.address)
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    with connect(results=True, give_up_after=10) as g:
        first = g.put(3)
        assert g.mail.started  # the fetch went behind the put
        # When it puts again, asks where a task is, and puts once more: each call behind the
        # fetch ends its wait at god (else each would wait 600 s)
        second = g.put(4)
        assert g.task(first)["state"] == "waiting"
        g.put(5)
        # Then every result comes once a consumer runs them, none lost among the early fetches
        spawn("consumer", "--processes", "1", env_extra=addr_env(god))
        results = {r.id: r.value for r in g.results(timeout=30)}
        assert results[first] == square(3) and results[second] == square(4) and len(results) == 3
        g.put(6)  # and the producer leaves with a fetch in flight, at once
    assert not g.mail.started


def test_a_results_line_holds_a_large_payload_as_its_size_and_digest_and_the_producer_gets_the_value(
    start_god: Callable[..., God], spawn: Callable[..., Proc], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given god keeping up to 1,000 characters of a payload in a results line
    god = start_god("--results-payload-max", "1000")
    spawn("consumer", "--task", "tests.support.tasks:echo", "--processes", "1", env_extra=addr_env(god))
    monkeypatch.setenv("GOD_ADDRESS", god.address)
    monkeypatch.setenv("GOD_AUTHKEY", env["GOD_AUTHKEY"])
    big, small = bytes(range(256)) * 4096, b"small"  # 1 MiB
    # When a program puts a payload of 1 MiB and a small one, and waits for their results
    with connect(results=True, give_up_after=10) as g:
        ids = [g.put(big), g.put(small)]
        values = {r.id: r.value for r in g.results(timeout=30)}
    # Then it gets both values whole, and the results file has the large one in brief
    assert values == {ids[0]: big, ids[1]: small}
    lines = {r["id"]: r for r in wait_for_results(god.results, 2)}
    assert lines[ids[0]]["payload"] == {"large": "bytes", "bytes": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    assert lines[ids[1]]["payload"] == repr(small)
