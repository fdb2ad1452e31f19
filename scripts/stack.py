"""Start and stop a whole flipguard stack as real processes: migrations, the API server and
one Celery worker. Used by the embedded one-command start, the demo and the integration
tests (which point it at PostgreSQL and Redis instead of the embedded defaults)."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

import httpx

from contracts.tasks import LIGHT_QUEUE, TRAINING_QUEUE

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def embedded_env(home: Path) -> dict[str, str]:
    """Settings of the embedded default: SQLite file, filesystem broker, local artifacts."""
    home = home.resolve()
    return {
        "FLIPGUARD_DATABASE_URL": f"sqlite:///{home}/flipguard.db",
        "FLIPGUARD_BROKER_URL": f"filesystem://{home}/broker",
        "FLIPGUARD_ARTIFACT_ROOT": str(home / "artifacts"),
        "FLIPGUARD_DATA_ROOTS": json.dumps(["/usr/share/datasets", str(home / "data")]),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM when the launcher dies, so a
    killed test run or demo leaves no API or worker behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Stack:
    """A running API and workers with one environment; `url` is the API's base URL and
    `token` an admin API token (read, submit, admin) created by `migrate`."""

    def __init__(self, env: dict[str, str], *, port: int | None = None, log_dir: Path):
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.token: str | None = None

    def _spawn(
        self, name: str, args: list[str], extra_env: dict | None = None, address_space_bytes: int | None = None
    ) -> subprocess.Popen:
        def before_exec() -> None:
            _die_with_parent()
            if address_space_bytes is not None:  # a memory bomb then fails in the child alone
                resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))

        # The child keeps its own copy of the log's descriptor; this process needs none.
        with open(self.log_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                args,
                cwd=ROOT,
                env={**self.env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals to the test runner do not reach the children
                preexec_fn=before_exec,
            )

    def migrate(self) -> None:
        """Upgrade the database to head and create the stack's admin token (`self.token`)."""
        subprocess.run(
            [PYTHON, "-c", "import os, db.migrate as m; m.upgrade(os.environ['FLIPGUARD_DATABASE_URL'])"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )
        self.token = self.create_token(name=f"stack-{self.port}", scopes="read,submit,admin")

    def create_token(self, *, name: str, scopes: str) -> str:
        """A new API token from the admin command (`python -m api.tokens create`)."""
        created = subprocess.run(
            [PYTHON, "-m", "api.tokens", "create", "--name", name, "--scopes", scopes],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return created.stdout.strip()

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the admin token."""
        return {"Authorization": f"Bearer {self.token}"}

    def start_api(self, *, log_level: str = "warning") -> None:
        self.api = self._spawn(
            "api",
            [
                PYTHON,
                "-m",
                "uvicorn",
                "api.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                log_level,
            ],
        )
        self.wait_until(lambda: self._healthy(), timeout_s=60, what="the API to answer /health")

    def start_worker(
        self,
        name: str = "worker",
        queues: str = f"{TRAINING_QUEUE},{LIGHT_QUEUE}",
        extra_env: dict | None = None,
        *,
        address_space_bytes: int | None = None,
    ) -> subprocess.Popen:
        """A Celery worker process; `address_space_bytes` caps its virtual memory (RLIMIT_AS)."""
        worker = self._spawn(
            name,
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "worker.app",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "-Q",
                queues,
                "-n",
                f"{name}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            extra_env,
            address_space_bytes,
        )
        self.workers.append(worker)
        return worker

    def _healthy(self) -> bool:
        if self.api is not None and self.api.poll() is not None:
            raise RuntimeError(f"the API exited with {self.api.returncode}; see {self.log_dir / 'api.log'}")
        try:
            response = httpx.get(f"{self.url}/health", timeout=5)
        except httpx.HTTPError:
            return False
        # The API is up once it answers with a working database; /health stays 503 until a
        # worker serves the training queue, and workers are started after the API.
        return response.status_code == 200 or (response.status_code == 503 and response.json().get("database") == "ok")

    @staticmethod
    def wait_until(
        condition: Callable[[], T | Literal[False] | None], *, timeout_s: float, what: str, interval_s: float = 0.3
    ) -> T:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(interval_s)
        raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")

    def stop_process(
        self, process: subprocess.Popen, *, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30
    ) -> None:
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop(self) -> None:
        for worker in self.workers:
            self.stop_process(worker)
        if self.api is not None:
            self.stop_process(self.api)


@contextmanager
def running_stack(env: dict[str, str], *, log_dir: Path, port: int | None = None, workers: int = 1) -> Iterator[Stack]:
    """Migrate, start the API and `workers` workers; stop them all on exit."""
    stack = Stack(env, port=port, log_dir=log_dir)
    try:
        stack.migrate()
        stack.start_api()
        for index in range(workers):
            stack.start_worker(f"worker{index}")
        yield stack
    finally:
        stack.stop()
