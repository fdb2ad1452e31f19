"""The Typer app: global options, the command groups and `main` for scripts and tests."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.client import DEFAULT_URL, EXIT_CODES_HELP, STATE, ExitCode
from api.cli.datasets import datasets_app
from api.cli.flips import compare, flips
from api.cli.models import models_app
from api.cli.output import err
from api.cli.updates import updates_app

OVERVIEW = """Command-line client of the flipguard API.

Commands:

* `datasets add NAME URI --format F [--wait]`, `datasets list`, `datasets show ID`
* `models list` (accuracy and NFR columns), `models show ID`, `models upload FILE --family F`,
`models download ID [-o FILE]`, `models promote ID [--force --reason R]`, `models lineage ID`
* `updates submit --dataset D [--base M] [--watch] ...`, `updates list`, `updates show ID`,
`updates cancel ID`, `updates watch ID`
* `flips MODEL [--against OTHER] [--kind K] [--class C] [--csv]`: a flip report
* `compare A B`: the flip report of any version against any other (computed on demand; waits)

The API's URL comes from --url or FLIPGUARD_URL, the token from --token or FLIPGUARD_TOKEN
(`python -m api.tokens create`). Every command takes --help.
"""

app = typer.Typer(
    name="python -m api.cli",
    help=OVERVIEW,
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(updates_app, name="updates")
app.add_typer(updates_app, name="update", hidden=True)  # the earlier name, kept for scripts
app.command("flips")(flips)
app.command("compare")(compare)


# ---- top level -------------------------------------------------------------------------------


@app.callback()
def main_options(
    url: Annotated[str, typer.Option(envvar="FLIPGUARD_URL", help="the API's base URL")] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="FLIPGUARD_TOKEN", help="API token (`python -m api.tokens create`)", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON instead of tables")] = False,
) -> None:
    STATE.clear()
    STATE.update(url=url.rstrip("/"), token=token, as_json=as_json)


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process and return its exit code (scripts and tests);
    `python -m api.cli` runs the same app as a program."""
    try:
        result = app(args=argv, prog_name="python -m api.cli", standalone_mode=False)
    except typer.Abort:
        err.print("aborted")
        return int(ExitCode.FAILED)
    except typer.TyperException as error:  # click's usage errors (exit 2)
        error.show()  # type: ignore[attr-defined]
        return int(getattr(error, "exit_code", ExitCode.USAGE))
    finally:
        client = STATE.pop("session", None)
        if client is not None:
            client.client.close()
    return result if isinstance(result, int) else int(ExitCode.OK)
