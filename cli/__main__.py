"""Run the CLI with `python -m cli`."""

from cli.main import app

app()
