"""Settings for every role: address parsing and authkey resolution; the only reader of os.environ."""

from __future__ import annotations

import base64
import ipaddress
import json
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
ENV_CONNECTION = "GOD_CONNECTION"
ENV_PLAIN = "GOD_INSECURE_PLAIN_TCP"
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
    #: God's certificate (PEM) from a connection file: trusted alone, beyond this machine.
    pin: str | None = None
    #: Plain TCP beyond this machine allowed (--insecure-plain-tcp): for god, to peers elsewhere.
    plain: bool = False


@dataclass(frozen=True, slots=True)
class Connection:
    """A connection file's content: what a host needs to reach god (god/transport/identity.py)."""

    address: str | None
    authkey: bytes = field(repr=False)
    certificate: str
    source: str  # where it came from, for messages


def read_connection(given: str) -> Connection:
    """A connection file (a path), or its content (JSON, as GOD_CONNECTION may hold it).

    Raises:
        ConfigError: naming the file and what is wrong with it.
    """
    if given.lstrip().startswith("{"):
        source, text = f"the connection in {ENV_CONNECTION}", given
    else:
        source = f"connection file {given}"
        raw = read_private(Path(given), "connection file", harm="can run code on god and pose as it")
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise ConfigError(f"{source} is not text: give the file god wrote (connection-PORT.json)") from None
    try:
        content = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{source} is not JSON ({e}): give the file god wrote (connection-PORT.json)") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{source} is not a JSON object: give the file god wrote (connection-PORT.json)")
    cert, key, address = content.get("certificate"), content.get("authkey_base64"), content.get("address")
    if not isinstance(cert, str) or "-----BEGIN CERTIFICATE-----" not in cert:
        raise ConfigError(f"{source} holds no certificate (PEM, under 'certificate')")
    try:
        authkey = base64.b64decode(key, validate=True) if isinstance(key, str) else b""
    except ValueError:
        authkey = b""
    if not authkey:
        raise ConfigError(f"{source} holds no authkey (base64, under 'authkey_base64')")
    if address is not None and not isinstance(address, str):
        raise ConfigError(f"{source}: 'address' is not HOST:PORT text")
    return Connection(address=address, authkey=authkey, certificate=cert, source=source)


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


def loopback(host: str) -> bool:
    """Whether an address (or 'localhost') is this machine's loopback: 127.0.0.0/8, ::1, or
    IPv4's loopback mapped into IPv6. What travels there never leaves the machine."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host == "localhost"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def hostname() -> str:
    """This machine's short name, used in ids and log lines."""
    return socket.gethostname().split(".")[0] or "localhost"


def state_dir() -> Path:
    """Where god keeps its generated authkey and its journal."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "god"


def cache_dir() -> Path:
    """Where a consumer host caches what it fetched from god (large values: consumer/values.py)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "god"


def default_authkey_path() -> Path:
    """The file a key-less god writes its key to, and key-less clients read it from."""
    return state_dir() / "authkey"


def default_journal_path(port: int) -> Path:
    """God's journal unless told otherwise: one per port, so two gods on one host do not share."""
    return state_dir() / f"journal-{port}.sqlite3"


def read_private(path: Path, what: str, harm: str = "can run code on god") -> bytes:
    """Read a file of secrets (the authkey, god's TLS key, a connection file); surrounding
    whitespace (a trailing newline) is not part of it. A file that others than its owner may
    read or write is refused, as ssh refuses such a private key.

    Raises:
        ConfigError: naming the file and what is wrong with it.
    """
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"{what} {path} is not readable (permission denied)") from None
    except OSError as e:
        raise ConfigError(f"{what} {path} cannot be read: {e.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"{what} {path} is open to others (mode {mode & 0o777:04o}): anyone who can read "
                          f"it {harm}; chmod 600 {path}")
    if not data:
        raise ConfigError(f"{what} {path} is empty")
    return data


def read_authkey_file(path: Path) -> bytes:
    """Read a key file (see ``read_private``)."""
    return read_private(path, "authkey file")


def write_private(path: Path, data: bytes, *, what: str, replace: bool = False) -> bool:
    """Write a file only its owner may read, in a directory only its owner may enter if new.

    Without ``replace`` an existing file is kept (O_EXCL: two gods starting at once must not
    overwrite each other's) and False returned; with it, the file is replaced whole (a reader
    never sees half of it).

    Raises:
        ConfigError: it cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp") if replace else path
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as e:
        raise ConfigError(f"cannot write {what} to {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if replace:
            os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"cannot write {what} to {path}: {e.strerror}") from None
    return True


def _generate_authkey(path: Path) -> bytes:
    key = secrets.token_hex(KEY_BYTES).encode()
    if not write_private(path, key + b"\n", what="a generated authkey"):
        return read_authkey_file(path)
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
    give_up_after: float = GIVE_UP_AFTER_S, tls: Tls | None = None, connection: Connection | None = None,
    plain: bool = False,
) -> Settings:
    """Validate everything a role needs before it binds, connects or forks; a key given (a file,
    GOD_AUTHKEY) wins over a connection file's."""
    if give_up_after <= 0:
        raise ConfigError(f"--give-up-after must be positive, got {give_up_after}")
    addr = parse_address(address, default_host=default_host)
    if connection is not None and authkey_file is None and os.environ.get(ENV_AUTHKEY) is None:
        key, source = connection.authkey, connection.source
    else:
        key, source = resolve_authkey(authkey_file, generate=generate_key)
    return Settings(address=addr, authkey=key, authkey_source=source, give_up_after=give_up_after, tls=tls,
                    pin=connection.certificate if connection is not None else None, plain=plain)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _plain(given: bool) -> bool:
    if given:
        return True
    value = os.environ.get(ENV_PLAIN, "").strip().lower()
    if value in ("", "0", "no", "false"):
        return False
    if value in ("1", "yes", "true"):
        return True
    raise ConfigError(f"{ENV_PLAIN}={value!r}: give 1 (plain TCP beyond this machine, unprotected) or 0")


def _address(given: str | None, default: str) -> str:
    if given is not None:
        return given
    env = os.environ.get(ENV_ADDRESS)
    return env if env is not None else default


def client_settings(
    address: str | None = None, authkey_file: Path | None = None, *, give_up_after: float = GIVE_UP_AFTER_S,
    tls_cert: Path | None = None, tls_key: Path | None = None, tls_ca: Path | None = None,
    connection: str | None = None, insecure_plain_tcp: bool = False,
) -> Settings:
    """A producer's, consumer's or status client's settings: what is given, else the environment
    (GOD_ADDRESS, GOD_AUTHKEY_FILE or GOD_AUTHKEY, GOD_CONNECTION, GOD_INSECURE_PLAIN_TCP,
    GOD_TLS_CERT, GOD_TLS_KEY, GOD_TLS_CA), else a connection file's address and key, else the
    defaults. The command line and the Python API both come here.

    Raises:
        ConfigError: naming the setting that cannot be used.
    """
    given = connection or os.environ.get(ENV_CONNECTION) or None
    conn = read_connection(given) if given else None
    return _settings(address, authkey_file, (tls_cert, tls_key, tls_ca), god=False, give_up_after=give_up_after,
                     connection=conn, plain=_plain(insecure_plain_tcp))


def god_settings(
    address: str | None = None, authkey_file: Path | None = None, *,
    tls_cert: Path | None = None, tls_key: Path | None = None, tls_ca: Path | None = None,
    insecure_plain_tcp: bool = False,
) -> Settings:
    """God's settings, the same way; a god with no key anywhere makes one.

    Raises:
        ConfigError: naming the setting that cannot be used.
    """
    return _settings(address, authkey_file, (tls_cert, tls_key, tls_ca), god=True, plain=_plain(insecure_plain_tcp))


def _settings(address: str | None, authkey_file: Path | None, tls: tuple[Path | None, Path | None, Path | None], *,
              god: bool, give_up_after: float = GIVE_UP_AFTER_S, connection: Connection | None = None,
              plain: bool = False) -> Settings:
    cert, key, ca = (given or _env_path(name) for given, name in zip(tls, (ENV_TLS_CERT, ENV_TLS_KEY, ENV_TLS_CA)))
    host = GOD_BIND_HOST if god else CLIENT_HOST
    default = connection.address if connection is not None and connection.address else f"{host}:{DEFAULT_PORT}"
    return load_settings(_address(address, default), authkey_file or _env_path(ENV_AUTHKEY_FILE),
                         default_host=host, generate_key=god, give_up_after=give_up_after,
                         tls=tls_files(cert, key, ca, server=god), connection=connection, plain=plain)
