"""What every role's command line shares: the common options and turning errors into exits."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from shared import exitcodes
from shared.errors import GodError
from shared.log import logger

# The environment is read in shared/config.py alone; these options only say so. What a flag
# gives wins over the environment.
AddressOption = Annotated[Optional[str], typer.Option(
    help="God's HOST:PORT. Default: GOD_ADDRESS, else 127.0.0.1:5678.", show_default=False,
)]
AuthkeyFileOption = Annotated[Optional[Path], typer.Option(
    help="File holding the authkey. Default: GOD_AUTHKEY_FILE, else GOD_AUTHKEY, else god's key file here.",
)]
GiveUpOption = Annotated[float, typer.Option(help="Seconds to keep retrying an unreachable god.")]
TlsCertOption = Annotated[Optional[Path], typer.Option(
    help="TLS certificate (PEM) to present: god's own, or a client's for mutual TLS. Default: GOD_TLS_CERT.",
)]
TlsKeyOption = Annotated[Optional[Path], typer.Option(
    help="Private key of --tls-cert (PEM), if not in the same file. Default: GOD_TLS_KEY.",
)]
TlsCaOption = Annotated[Optional[Path], typer.Option(
    help="CA certificate (PEM) that checks the peer: god's certificate for a client; "
    "for god, client certificates become required. Default: GOD_TLS_CA.",
)]
ConnectionOption = Annotated[Optional[str], typer.Option(
    help="God's connection file (it writes one as it starts, when it listens beyond its machine): its "
    "address, key and certificate. Default: GOD_CONNECTION.", show_default=False,
)]
PlainOption = Annotated[bool, typer.Option(
    "--insecure-plain-tcp",
    help="Plain TCP beyond this machine, no TLS: whoever is on the path reads everything, and whoever "
    "answers in god's place can run code on god. Default: GOD_INSECURE_PLAIN_TCP=1.",
)]
LogLevelOption = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")]
LogJsonOption = Annotated[bool, typer.Option(help="Write logs as JSON lines.")]


def _print_version(ctx: typer.Context, given: bool) -> None:
    if given:
        from shared.version import PYTHON, VERSION
        sys.stdout.write(f"{ctx.find_root().info_name} {VERSION} (Python {PYTHON})\n")
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option(
    "--version", is_eager=True, callback=_print_version, help="Print the version and exit.",
)]



class RoleApp(typer.Typer):
    """A role's Typer app: a flag the parser refuses (``--delay abc``, ``--rounds 0``) is one line
    and exit code 2, like every other mistake, instead of the usage text and a boxed error."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        prog = kwargs.get("prog_name") or "the command"
        try:
            code = super().__call__(*args, standalone_mode=False, **kwargs)
        except Exception as e:
            # click's UsageError (typer may carry its own copy of click, so it is known by name)
            if not any(c.__name__ == "UsageError" for c in type(e).__mro__):
                raise
            sys.stderr.write(f"{prog}: {e.format_message()} (see {prog} --help)\n")  # type: ignore[attr-defined]
            sys.exit(exitcodes.USAGE)
        sys.exit(code if isinstance(code, int) else exitcodes.OK)


def new_app() -> typer.Typer:
    """A role's Typer app; no local variables in tracebacks (they could hold the key)."""
    return RoleApp(add_completion=False, pretty_exceptions_show_locals=False)


def run_role(role: str, body: Callable[[], int]) -> None:
    """Run a command body; an expected failure becomes one logged line and its exit code."""
    try:
        code = body()
    except GodError as e:
        logger.bind(role=role).error(str(e))
        raise typer.Exit(e.exit_code) from None
    raise typer.Exit(code)
