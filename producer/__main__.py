from producer.cli import app

app(prog_name="producer")
