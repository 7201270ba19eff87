from god.cli import app

app(prog_name="god")
