"""What every role's command line shares: the common options and turning errors into exits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from loguru import logger

from shared.config import CLIENT_HOST, DEFAULT_PORT, Settings, load_settings, tls_files
from shared.errors import GodError

CLIENT_ADDRESS = f"{CLIENT_HOST}:{DEFAULT_PORT}"

AddressOption = Annotated[str, typer.Option(envvar="GOD_ADDRESS", help="God's HOST:PORT.")]
AuthkeyFileOption = Annotated[Optional[Path], typer.Option(
    envvar="GOD_AUTHKEY_FILE", help="File holding the authkey. Default: GOD_AUTHKEY, else god's key file here.",
)]
GiveUpOption = Annotated[float, typer.Option(help="Seconds to keep retrying an unreachable god.")]
TlsCertOption = Annotated[Optional[Path], typer.Option(
    envvar="GOD_TLS_CERT", help="TLS certificate (PEM) to present: god's own, or a client's for mutual TLS.",
)]
TlsKeyOption = Annotated[Optional[Path], typer.Option(
    envvar="GOD_TLS_KEY", help="Private key of --tls-cert (PEM), if not in the same file.",
)]
TlsCaOption = Annotated[Optional[Path], typer.Option(
    envvar="GOD_TLS_CA", help="CA certificate (PEM) that checks the peer: god's certificate for a client; "
    "for god, client certificates become required.",
)]
LogLevelOption = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")]
LogJsonOption = Annotated[bool, typer.Option(help="Write logs as JSON lines.")]


def client_settings(
    address: str, authkey_file: Path | None, give_up_after: float,
    tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
) -> Settings:
    """The settings of a role that connects to god (producer, consumer, status), from its options."""
    return load_settings(address, authkey_file, default_host=CLIENT_HOST, give_up_after=give_up_after,
                         tls=tls_files(tls_cert, tls_key, tls_ca, server=False))


def new_app() -> typer.Typer:
    """A role's Typer app; no local variables in tracebacks (they could hold the key)."""
    return typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def run_role(role: str, body: Callable[[], int]) -> None:
    """Run a command body; an expected failure becomes one logged line and its exit code."""
    try:
        code = body()
    except GodError as e:
        logger.bind(role=role).error(str(e))
        raise typer.Exit(e.exit_code) from None
    raise typer.Exit(code)
