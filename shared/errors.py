"""Expected failures: each carries a one-line message for the user and an exit code."""

from __future__ import annotations

from shared import exitcodes


class GodError(Exception):
    """An expected failure that a CLI reports as one line and a non-zero exit."""

    exit_code = exitcodes.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(GodError):
    """Options that cannot be used together."""

    exit_code = exitcodes.USAGE


class ConfigError(GodError):
    """A setting (flag, environment variable, file) has a value we cannot use."""

    exit_code = exitcodes.CONFIG


class UnreachableError(GodError):
    """God did not answer within the allowed time."""

    exit_code = exitcodes.UNREACHABLE


class AuthError(GodError):
    """God refused our authkey (or the peer is not a god)."""

    exit_code = exitcodes.AUTH


class NotAllowed(AuthError):
    """God's rights table refused a call of our principal (god --keys)."""


class AddressInUseError(GodError):
    """God's address is taken by another process."""

    exit_code = exitcodes.ADDRESS_IN_USE


class Interrupted(GodError):
    """A stop was requested while we were waiting."""

    exit_code = exitcodes.INTERRUPTED
