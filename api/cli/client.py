"""The client's HTTP session, its failures and the exit codes every command returns."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import typer

from api.cli.output import err

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_JOB_STATUSES = {"succeeded", "failed", "cancelled"}


class ExitCode(enum.IntEnum):
    """The exit status of every command (documented in --help)."""

    OK = 0
    FAILED = 1  # the API refused the request, or the job / comparison / inspection failed
    USAGE = 2  # a bad option or argument (click's own usage errors exit 2 too)
    GATE_REJECTED = 3  # the job succeeded but its gate rejected the version
    CANCELLED = 4  # the job was cancelled
    UNREACHABLE = 5  # the API could not be reached


EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 failed (the API refused the request, or the job, comparison or "
    "inspection failed); 2 usage error; 3 the gate rejected the trained version; 4 the job was "
    "cancelled; 5 the API could not be reached."
)


# ---- the client and its errors ---------------------------------------------------------------


class ApiFailure(Exception):
    """An error response of the API: its status and its detail rows ({loc, msg, type})."""

    def __init__(self, status: int, details: list[dict], text: str) -> None:
        super().__init__(text)
        self.status = status
        self.details = details
        self.text = text


@dataclass
class Session:
    """The HTTP client of one command, with the settings of the top-level options."""

    client: httpx.Client
    url: str
    as_json: bool

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """Send a request; raise ApiFailure for an error status (unless it is in `expect`)."""
        response = self.client.request(method, path, **kwargs)
        if response.is_error and response.status_code not in expect:
            details: list[dict] = []
            try:
                body = response.json()
                details = [d for d in body.get("detail", []) if isinstance(d, dict)]
            except (ValueError, AttributeError):
                pass
            raise ApiFailure(response.status_code, details, response.text)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()


# Client factory: tests replace it to run commands against an in-process app.
def make_client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=60, headers=headers)


STATE: dict[str, Any] = {}


def session() -> Session:
    """The client of the running command (created by the top-level callback)."""
    if "session" not in STATE:
        STATE["session"] = Session(make_client(STATE["url"], STATE["token"]), STATE["url"], STATE["as_json"])
    return STATE["session"]


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(int(code))


def describe_failure(failure: ApiFailure, names: dict[tuple, str]) -> str:
    """The API's error in the CLI's words: each `loc` becomes the option or argument it came from."""
    if not failure.details:
        return f"HTTP {failure.status}: {failure.text.strip()[:500]}"
    parts = []
    for detail in failure.details:
        loc = tuple(detail.get("loc") or ())
        name = names.get(loc)
        if name is None and len(loc) > 2 and loc[:2] in names:  # a key inside an option's dict
            name = f"{names[loc[:2]]} {'.'.join(map(str, loc[2:]))}"
        if name is None and loc[:1] == ("header",) and loc[1:] == ("Authorization",):
            name = "--token"
        where = name or (".".join(map(str, loc)) if loc else "")
        parts.append(f"{where}: {detail.get('msg')}" if where else str(detail.get("msg")))
    return "; ".join(parts)


def run(action: Callable[[], Any], names: dict[tuple, str] | None = None) -> Any:
    """Run a command's body, turning API failures and network errors into messages and codes."""
    try:
        return action()
    except ApiFailure as failure:
        fail(describe_failure(failure, names or {}))
    except httpx.HTTPError as error:
        fail(f"cannot reach the API at {STATE.get('url')}: {error}", ExitCode.UNREACHABLE)
