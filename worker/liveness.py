"""Each worker's heartbeat row (db/workers): refreshed from a daemon thread, removed on a clean
shutdown. /health reads them to tell which workers are live and which queues they serve."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from db.base import utcnow
from db.settings import Settings
from db.workers.service import record_heartbeat, remove_worker

log = logging.getLogger(__name__)


class Liveness:
    def __init__(
        self, *, name: str, queues: list[str], settings: Settings, session_factory: Callable[[], Session]
    ) -> None:
        self.name = name
        self.queues = sorted(queues)
        self.settings = settings
        self.session_factory = session_factory
        self.started_at = utcnow()
        self._stop = threading.Event()
        # A beat and the removal never interleave: no beat re-creates the row after a stop.
        self._writing = threading.Lock()

    def beat(self) -> None:
        with self._writing:
            if self._stop.is_set():
                return
            try:
                with self.session_factory() as session:
                    record_heartbeat(session, name=self.name, queues=self.queues, started_at=self.started_at)
            except Exception:  # a database outage: /health shows the gap; beat again next round
                log.warning("worker heartbeat failed", exc_info=True)

    def start(self) -> Liveness:
        self.beat()

        def loop() -> None:
            while not self._stop.wait(self.settings.worker_heartbeat_interval_s):
                self.beat()

        threading.Thread(target=loop, name="worker-liveness", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._writing:
            self._stop.set()
            try:
                with self.session_factory() as session:
                    remove_worker(session, name=self.name)
            except Exception:
                log.warning("could not remove the worker's heartbeat row", exc_info=True)
