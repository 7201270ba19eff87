"""The project's version: pyproject.toml reads it from here, and every role's ``--version`` prints it."""

VERSION = "0.1.0"
