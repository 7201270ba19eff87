"""``python -m producer``, and the installed ``producer`` command (pyproject.toml's scripts)."""

from producer.cli import app


def main() -> None:
    app(prog_name="producer")


if __name__ == "__main__":
    main()
