"""`python -m api.cli`: the client CLI as a program."""

from api.cli.app import app

app(prog_name="python -m api.cli")
