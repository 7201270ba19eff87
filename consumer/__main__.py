"""``python -m consumer``, and the installed ``consumer`` command (pyproject.toml's scripts)."""


def main() -> None:
    # The CLI (typer, every command) is imported when the command runs, not above: a process
    # that only imports this module (a consumer's workers: multiprocessing's spawn imports the
    # parent's main module again) needs none of it.
    from consumer.cli import app

    app(prog_name="consumer")


if __name__ == "__main__":
    main()
