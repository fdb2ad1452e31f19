"""Private PostgreSQL and Redis servers, started by a test so that it may restart them
without disturbing the machine's shared ones."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager

import psycopg
import redis

from scripts.stack import free_port

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivateRedis:
    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        # Like the machine's Redis: nothing kept on disk, so a restart loses every queue.
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class PrivatePostgres:
    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="flipguard-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.data = os.path.join(self.folder, "data")
        subprocess.run(
            _as_postgres([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres(
                [
                    f"{PG_BIN}/pg_ctl",
                    "-D",
                    self.data,
                    "-w",
                    "-l",
                    os.path.join(self.folder, "log"),
                    "-o",
                    f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                    *args,
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Starts the server on its port (a restart keeps the port its clients know)."""
        try:
            self._ctl("start")
        except subprocess.CalledProcessError as error:
            with open(os.path.join(self.folder, "log")) as log:
                raise RuntimeError(f"private postgres did not start:\n{log.read()[-2000:]}") from error
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres").close()

    def first_start(self) -> None:
        """Starts the server, on another free port when a client socket took its port since it
        was chosen (a probed port is only free at the moment of the probe)."""
        for _ in range(2):
            try:
                self.start()
                return
            except RuntimeError:
                self.port = free_port()
        self.start()

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_services():
    """A private Redis and PostgreSQL, both running; removed afterwards."""
    broker = PrivateRedis()
    broker.start()
    try:
        # Chosen only once Redis holds its port: free_port could otherwise hand out the same one twice.
        database = PrivatePostgres()
        try:
            database.first_start()
            try:
                yield broker, database
            finally:
                database.stop()
        finally:
            database.remove()
    finally:
        broker.stop()
