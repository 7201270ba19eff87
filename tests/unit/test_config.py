"""Address parsing and authkey resolution."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from shared import config
from shared.errors import ConfigError
from shared.version import VERSION, other_version


@pytest.mark.parametrize("text,expected", [
    ("example.org:80", ("example.org", 80)),
    ("example.org", ("example.org", 5678)),
    (":0", ("dflt", 0)),
    ("[::1]:9000", ("::1", 9000)),
    ("10.0.0.1:65535", ("10.0.0.1", 65535)),
    ("god-1.internal_net.example.:5678", ("god-1.internal_net.example.", 5678)),
    ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
])
def test_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert config.parse_address(text, default_host="dflt") == expected


@pytest.mark.parametrize("text,says", [
    ("host:port", "'port' is not a number"),
    ("host:70000", "not a number from 0 to 65535"),
    ("", "empty"),
    ("::1:5", "IPv6"),
    ("[::1", "without ']'"),
    ("not an address", "'not an address' cannot be a host name"),
    ("http://127.0.0.1:5678", "is a URL: give HOST:PORT"),
    ("127.0.0.1:", "has ':' but no port after it"),
    ("a..b:80", "cannot be a host name"),
    ("[not v6]:80", "cannot be a host name"),
])
def test_bad_addresses_are_named(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        config.parse_address(text, default_host="h")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("GOD_AUTHKEY", raising=False)
    return tmp_path / "god" / "authkey"


def test_god_without_a_key_generates_a_private_one_and_clients_find_it(state: Path) -> None:
    key, source = config.resolve_authkey(None, generate=True)
    assert len(key) == 64 and source == f"a new key written to {state} (mode 0600)"  # read after "authkey from "
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert config.resolve_authkey(None, generate=False)[0] == key
    assert config.resolve_authkey(None, generate=True)[0] == key  # reused, not replaced


def test_a_client_without_any_key_is_told_where_to_get_one(state: Path) -> None:
    with pytest.raises(ConfigError, match="no authkey: set GOD_AUTHKEY"):
        config.resolve_authkey(None, generate=False)


def test_key_file_beats_environment_beats_default(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config.resolve_authkey(None, generate=True)
    monkeypatch.setenv("GOD_AUTHKEY", "from-env")
    assert config.resolve_authkey(None, generate=False)[0] == b"from-env"
    f = tmp_path / "k"
    f.write_text("from-file\n")
    f.chmod(0o600)
    assert config.resolve_authkey(f, generate=False) == (b"from-file", f"file {f}")
    f.chmod(0o400)  # read-only to its owner, as systemd hands a credential over
    assert config.resolve_authkey(f, generate=False) == (b"from-file", f"file {f}")


@pytest.mark.parametrize("content, mode, says", [
    ("", 0o600, "is empty"), (None, 0o600, "does not exist"),
    ("k", 0o644, r"is open to others \(mode 0644\): anyone who can read it can run code on god; chmod 600 "),
    ("k", 0o620, r"is open to others \(mode 0620\)"),
])
def test_bad_key_files_are_named(tmp_path: Path, content: str | None, mode: int, says: str, state: Path) -> None:
    f = tmp_path / "key"
    if content is not None:
        f.write_text(content)
        f.chmod(mode)
    with pytest.raises(ConfigError, match=says):
        config.resolve_authkey(f, generate=False)


def test_an_empty_key_in_the_environment_is_refused(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOD_AUTHKEY", "  ")
    with pytest.raises(ConfigError, match="GOD_AUTHKEY is set but empty"):
        config.resolve_authkey(None, generate=True)


def test_settings_never_show_the_key(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOD_AUTHKEY", "s3cret-value")
    s = config.load_settings("h:1", None, default_host="h")
    assert "s3cret" not in repr(s)


def test_client_settings_come_from_flags_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_text("from-file\n")
    key.chmod(0o600)
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    monkeypatch.setenv("GOD_ADDRESS", "coord:7000")
    monkeypatch.setenv("GOD_AUTHKEY_FILE", str(key))
    monkeypatch.setenv("GOD_AUTHKEY", "from-env")
    monkeypatch.setenv("GOD_TLS_CA", str(ca))
    s = config.client_settings()
    assert (s.address, s.authkey, s.tls) == (("coord", 7000), b"from-file", config.Tls(ca=ca))
    s = config.client_settings("other:1", give_up_after=3)  # a flag wins
    assert (s.address, s.give_up_after) == (("other", 1), 3)
    monkeypatch.setenv("GOD_ADDRESS", "")
    with pytest.raises(ConfigError, match="address is empty"):  # set but empty: said, not ignored
        config.client_settings()
    monkeypatch.delenv("GOD_ADDRESS")
    assert config.god_settings(tls_cert=ca).address == ("0.0.0.0", 5678)


def test_a_peer_of_another_version_is_named_with_both_versions() -> None:
    assert other_version("god at coord:5678", VERSION) is None
    assert other_version("god at coord:5678", None) is None  # an older peer that does not say
    assert other_version("consumer c1:42 on c1", "9.9.9") == (
        f"consumer c1:42 on c1 runs god-tasks 9.9.9, this process {VERSION}: run one version on every host")


def test_processpoolexecutors_own_arguments_and_unknown_options_are_named_before_connecting() -> None:
    from producer import Executor

    with pytest.raises(ConfigError, match=r"Executor\(max_workers=\.\.\.\): that is ProcessPoolExecutor's; .*--processes"):
        Executor("127.0.0.1:1", max_workers=4)
    with pytest.raises(ConfigError, match=r"^not a put option: max_worker \(they are queue, task, priority, "):
        Executor("127.0.0.1:1", max_worker=4)


def _connection(tmp_path: Path, **fields: object) -> Path:
    f = tmp_path / "god.conn"
    f.write_text(json.dumps({"address": "coord:7000", "authkey_base64": base64.b64encode(b"k3y").decode(),
                             "certificate": "-----BEGIN CERTIFICATE-----\nx\n", **fields}))
    f.chmod(0o600)
    return f


def test_a_connection_file_gives_address_key_and_certificate_and_what_is_given_wins(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = _connection(tmp_path)
    monkeypatch.setenv("GOD_CONNECTION", str(f))
    s = config.client_settings()
    assert (s.address, s.authkey, s.authkey_source) == (("coord", 7000), b"k3y", f"connection file {f}")
    assert s.pin is not None and s.pin.startswith("-----BEGIN CERTIFICATE-----") and not s.plain
    assert "k3y" not in repr(s)
    # the same content as a value (it travels so on a pipe, in cluster.sh)
    monkeypatch.setenv("GOD_CONNECTION", f.read_text())
    assert config.client_settings().authkey == b"k3y"
    # an address or a key given wins over the file's
    monkeypatch.setenv("GOD_ADDRESS", "other:1")
    monkeypatch.setenv("GOD_AUTHKEY", "given")
    s = config.client_settings()
    assert (s.address, s.authkey) == (("other", 1), b"given")


@pytest.mark.parametrize("text, mode, says", [
    ('{"address": "a:1"', 0o600, r"is not JSON"),
    ("[]", 0o600, "is not a JSON object"),
    ('{"authkey_base64": "azN5"}', 0o600, r"holds no certificate \(PEM, under 'certificate'\)"),
    ('{"certificate": "-----BEGIN CERTIFICATE-----", "authkey_base64": "!!"}', 0o600, "holds no authkey"),
    ('{"certificate": "-----BEGIN CERTIFICATE-----", "authkey_base64": "azN5", "address": 5}', 0o600,
     "'address' is not HOST:PORT"),
    ("{}", 0o644, r"is open to others \(mode 0644\): anyone who can read it can run code on god and pose as it"),
])
def test_bad_connection_files_are_named(tmp_path: Path, text: str, mode: int, says: str, state: Path) -> None:
    f = tmp_path / "god.conn"
    f.write_text(text)
    f.chmod(mode)
    with pytest.raises(ConfigError, match=f"connection file {f} {says}" if "open" in says else says):
        config.client_settings(connection=str(f))


def test_plain_beyond_this_machine_is_asked_for_by_name(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOD_AUTHKEY", "k")
    assert not config.client_settings().plain
    assert config.client_settings(insecure_plain_tcp=True).plain
    monkeypatch.setenv("GOD_INSECURE_PLAIN_TCP", "1")
    assert config.client_settings().plain and config.god_settings().plain
    monkeypatch.setenv("GOD_INSECURE_PLAIN_TCP", "maybe")
    with pytest.raises(ConfigError, match="GOD_INSECURE_PLAIN_TCP='maybe': give 1"):
        config.client_settings()


@pytest.mark.parametrize("host, here", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("localhost", True),
    ("198.18.0.1", False), ("0.0.0.0", False), ("::", False), ("::ffff:10.0.0.1", False), ("coord", False),
])
def test_loopback_is_this_machine_only(host: str, here: bool) -> None:
    assert config.loopback(host) is here
