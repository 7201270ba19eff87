"""Settings for every role: address parsing and authkey resolution; the only reader of os.environ."""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError

DEFAULT_PORT = 5678
GOD_BIND_HOST = "0.0.0.0"  # god listens on every interface unless told otherwise
CLIENT_HOST = "127.0.0.1"  # producers and consumers look for god here unless told otherwise
ENV_AUTHKEY = "GOD_AUTHKEY"
ENV_ADDRESS = "GOD_ADDRESS"
ENV_AUTHKEY_FILE = "GOD_AUTHKEY_FILE"
ENV_TLS_CERT = "GOD_TLS_CERT"
ENV_TLS_KEY = "GOD_TLS_KEY"
ENV_TLS_CA = "GOD_TLS_CA"
GIVE_UP_AFTER_S = 180.0  # seconds a client keeps retrying an unreachable god
KEY_BYTES = 32  # entropy of a generated authkey

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS files: god's or a client's own certificate and key, and the CA that checks the peer."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """What a role needs to reach (or be) god. The key never shows in repr or logs."""

    address: Address
    authkey: bytes = field(repr=False)
    authkey_source: str
    give_up_after: float = GIVE_UP_AFTER_S
    tls: Tls | None = None


#: A host name (labels of letters, digits, '-' and '_', dot-separated) or an IPv4 address.
_HOST_RX = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?")
_IPV6_RX = re.compile(r"[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?")  # in brackets, with a zone if any


def parse_address(text: str, *, default_host: str) -> Address:
    """Parse ``HOST:PORT``, ``HOST``, ``:PORT`` or ``[IPv6]:PORT``.

    Raises:
        ConfigError: naming the text and what is wrong with it.
    """
    raw = text.strip()
    if not raw:
        raise ConfigError("address is empty: expected HOST:PORT, e.g. 127.0.0.1:5678")
    if "://" in raw:
        raise ConfigError(f"address {text!r} is a URL: give HOST:PORT, e.g. 127.0.0.1:5678")
    host, port_text = raw, ""
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ConfigError(f"address {text!r} has '[' without ']': expected [IPv6]:PORT")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"address {text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
        if not port_text:
            raise ConfigError(f"address {text!r} has ':' but no port after it: give HOST:PORT, or HOST alone "
                              f"for port {DEFAULT_PORT}")
    elif raw.count(":") > 1:
        raise ConfigError(f"address {text!r}: write an IPv6 address as [ADDR]:PORT")
    if host and not (_HOST_RX.fullmatch(host) if not raw.startswith("[") else _IPV6_RX.fullmatch(host)):
        raise ConfigError(f"address {text!r}: {host!r} cannot be a host name or IP address")
    host = host or default_host
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"address {text!r}: port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


def client_address(address: tuple[str, int]) -> str:
    """The address clients should use: a wildcard bind is reached through this host's name."""
    host, port = address
    if host in ("0.0.0.0", "::", ""):
        return format_address((hostname(), port))
    return format_address(address)


def format_address(address: Address) -> str:
    """Render an address the way parse_address reads it back."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hostname() -> str:
    """This machine's short name, used in ids and log lines."""
    return socket.gethostname().split(".")[0] or "localhost"


def state_dir() -> Path:
    """Where god keeps its generated authkey and its journal."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "god"


def default_authkey_path() -> Path:
    """The file a key-less god writes its key to, and key-less clients read it from."""
    return state_dir() / "authkey"


def default_journal_path(port: int) -> Path:
    """God's journal unless told otherwise: one per port, so two gods on one host do not share."""
    return state_dir() / f"journal-{port}.sqlite3"


def read_authkey_file(path: Path) -> bytes:
    """Read a key file; surrounding whitespace (a trailing newline) is not part of the key. A
    file that others than its owner may read or write is refused, as ssh refuses such a
    private key: whoever can read the key can run code on god."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            key = f.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"authkey file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"authkey file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"authkey file {path} is not readable (permission denied)") from None
    except OSError as e:
        raise ConfigError(f"authkey file {path} cannot be read: {e.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"authkey file {path} is open to others (mode {mode & 0o777:04o}): anyone who can read "
                          f"it can run code on god; chmod 600 {path}")
    if not key:
        raise ConfigError(f"authkey file {path} is empty")
    return key


def _generate_authkey(path: Path) -> bytes:
    key = secrets.token_hex(KEY_BYTES).encode()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: two gods starting at once must not overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_authkey_file(path)
    except OSError as e:
        raise ConfigError(f"cannot write a generated authkey to {path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


def resolve_authkey(authkey_file: Path | None, *, generate: bool) -> tuple[bytes, str]:
    """Find the authkey: --authkey-file (or GOD_AUTHKEY_FILE), then GOD_AUTHKEY, then the default file.

    Args:
        authkey_file: the path given on the command line or in GOD_AUTHKEY_FILE.
        generate: god passes True: with no key anywhere it makes one in the default file.

    Returns:
        The key and a description of where it came from (safe to log: no key material).

    Raises:
        ConfigError: the key is missing, empty or unreadable.
    """
    if authkey_file is not None:
        return read_authkey_file(authkey_file), f"file {authkey_file}"
    env_key = os.environ.get(ENV_AUTHKEY)
    if env_key is not None:
        if not env_key.strip():
            raise ConfigError(f"{ENV_AUTHKEY} is set but empty")
        return env_key.strip().encode(), f"environment variable {ENV_AUTHKEY}"
    path = default_authkey_path()
    if path.exists():
        return read_authkey_file(path), f"file {path}"
    if generate:
        return _generate_authkey(path), f"a new key written to {path} (mode 0600)"
    raise ConfigError(
        f"no authkey: set {ENV_AUTHKEY} or pass --authkey-file "
        f"(a god started without a key writes one to {path} on its own machine)"
    )


def tls_files(cert: Path | None, key: Path | None, ca: Path | None, *, server: bool) -> Tls | None:
    """The TLS files a role was given, checked for sense; None when TLS is off.

    God serves TLS when it has a certificate (``ca`` then means: require client
    certificates signed by it). A client uses TLS when it has a CA to check god against,
    or a certificate of its own to present.

    Raises:
        ConfigError: a combination that cannot work, or a file that is not there.
    """
    if cert is None and key is None and ca is None:
        return None
    if key is not None and cert is None:
        raise ConfigError("--tls-key needs --tls-cert (the certificate it belongs to)")
    if server and cert is None:
        raise ConfigError("god's --tls-ca (require client certificates) needs --tls-cert and --tls-key for god itself")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag} {path}: no such file")
    return Tls(cert=cert, key=key, ca=ca)


def load_settings(
    address: str, authkey_file: Path | None, *, default_host: str, generate_key: bool = False,
    give_up_after: float = GIVE_UP_AFTER_S, tls: Tls | None = None,
) -> Settings:
    """Validate everything a role needs before it binds, connects or forks."""
    if give_up_after <= 0:
        raise ConfigError(f"--give-up-after must be positive, got {give_up_after}")
    addr = parse_address(address, default_host=default_host)
    key, source = resolve_authkey(authkey_file, generate=generate_key)
    return Settings(address=addr, authkey=key, authkey_source=source, give_up_after=give_up_after, tls=tls)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _address(given: str | None, default: str) -> str:
    if given is not None:
        return given
    env = os.environ.get(ENV_ADDRESS)
    return env if env is not None else default


def client_settings(
    address: str | None = None, authkey_file: Path | None = None, *, give_up_after: float = GIVE_UP_AFTER_S,
    tls_cert: Path | None = None, tls_key: Path | None = None, tls_ca: Path | None = None,
) -> Settings:
    """A producer's, consumer's or status client's settings: what is given, else the environment
    (GOD_ADDRESS, GOD_AUTHKEY_FILE or GOD_AUTHKEY, GOD_TLS_CERT, GOD_TLS_KEY, GOD_TLS_CA), else
    the defaults. The command line and the Python API both come here.

    Raises:
        ConfigError: naming the setting that cannot be used.
    """
    return _settings(address, authkey_file, (tls_cert, tls_key, tls_ca), god=False, give_up_after=give_up_after)


def god_settings(
    address: str | None = None, authkey_file: Path | None = None, *,
    tls_cert: Path | None = None, tls_key: Path | None = None, tls_ca: Path | None = None,
) -> Settings:
    """God's settings, the same way; a god with no key anywhere makes one.

    Raises:
        ConfigError: naming the setting that cannot be used.
    """
    return _settings(address, authkey_file, (tls_cert, tls_key, tls_ca), god=True)


def _settings(address: str | None, authkey_file: Path | None, tls: tuple[Path | None, Path | None, Path | None], *,
              god: bool, give_up_after: float = GIVE_UP_AFTER_S) -> Settings:
    cert, key, ca = (given or _env_path(name) for given, name in zip(tls, (ENV_TLS_CERT, ENV_TLS_KEY, ENV_TLS_CA)))
    host = GOD_BIND_HOST if god else CLIENT_HOST
    return load_settings(_address(address, f"{host}:{DEFAULT_PORT}"), authkey_file or _env_path(ENV_AUTHKEY_FILE),
                         default_host=host, generate_key=god, give_up_after=give_up_after,
                         tls=tls_files(cert, key, ca, server=god))
