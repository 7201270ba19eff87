"""``python -m consumer``, and the installed ``consumer`` command (pyproject.toml's scripts)."""

from consumer.cli import app


def main() -> None:
    app(prog_name="consumer")


if __name__ == "__main__":
    main()
