"""``python -m god``, and the installed ``god`` command (pyproject.toml's scripts)."""

from god.cli import app


def main() -> None:
    app(prog_name="god")


if __name__ == "__main__":
    main()
