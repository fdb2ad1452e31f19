"""Service configuration, read from `FLIPGUARD_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

FILESYSTEM_BROKER_PREFIX = "filesystem://"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLIPGUARD_", extra="ignore")

    database_url: str = "sqlite:///var/flipguard.db"
    # `redis://host:port/db`, or `filesystem://<folder>` (kombu's filesystem transport, for
    # the embedded one-machine deployment; `filesystem:///abs/path` for an absolute folder).
    broker_url: str = "filesystem://var/broker"
    artifact_root: Path = Path("var/artifacts")
    # Data sets and model files given by uri must live under one of these folders.
    data_roots: list[Path] = Field(default_factory=lambda: [Path("/usr/share/datasets"), Path("var/data")])
    # A running job whose heartbeat is older than this may be taken over by another worker.
    heartbeat_timeout_s: float = 120.0
    # How often each worker looks for jobs that no broker message carries any more (a lost
    # Redis, a killed worker) and sends them again; claims make a duplicate harmless.
    reconcile_interval_s: float = 30.0
    # An update job claimed this many times (each claim after a worker died or stalled) is
    # failed instead of being run again.
    max_job_attempts: int = 5
    # What a worker reads from a data set (mpt.limits.DataLimits): decoded bytes of all arrays,
    # images, height x width of one image (also Pillow's MAX_IMAGE_PIXELS), classes.
    dataset_max_bytes: int = 4 * 1024**3
    dataset_max_images: int = 2_000_000
    dataset_max_image_pixels: int = 4096 * 4096
    dataset_max_classes: int = 10_000
    # An inspection that has not finished this long after it began is presumed dead (its worker
    # was killed or hangs) and is delivered again, at most max_inspect_deliveries times in all;
    # past that the data set is failed.
    inspect_timeout_s: float = 900.0
    max_inspect_deliveries: int = 3
    # A comparison still running this long after its claim is presumed lost (its worker died):
    # the reconciler sends it again and the new delivery may claim it. Longer than the slowest
    # comparison, or a live one is computed twice.
    comparison_timeout_s: float = 600.0
    # Claims of one comparison (each delivery counts) before it is failed unread: a pair whose
    # computation kills its worker would otherwise be sent again every comparison_timeout_s.
    # A user's new request for a failed pair starts the count again.
    max_comparison_attempts: int = 3
    # Each worker records a heartbeat this often; /health counts a worker as live while its
    # last one is younger than worker_stale_after_s, and answers 503 when no live worker
    # serves the training queue.
    worker_heartbeat_interval_s: float = 10.0
    worker_stale_after_s: float = 60.0
    # Request bodies: a model upload (POST /models) may be this large; every other body (JSON,
    # forms) at most max_json_body_bytes. Larger ones are a 413 before or while they are read.
    max_upload_bytes: int = 512 * 1024 * 1024
    max_json_body_bytes: int = 2 * 1024 * 1024
    device: str = "auto"
    # The URL browsers reach the API at (scheme://host[:port]), when a proxy in front of it
    # changes the scheme or host: cookie-authenticated writes must come from this origin.
    public_url: str | None = None
    # Every route but /health and the dashboard's login page needs a bearer token with the
    # route's scope (tokens: `python -m api.tokens create`). Off only for local experiments.
    auth_enabled: bool = True

    def artifact_path(self, uri: str) -> Path:
        """The local path of an artifact uri: uris are relative to artifact_root, so that every
        host (API, workers) can mount the store elsewhere; absolute paths are kept as they are."""
        return self.artifact_root / uri.removeprefix("file://")

    def broker_connection(self) -> tuple[str, dict]:
        """The Celery broker URL and transport options (the filesystem transport needs folders)."""
        if not self.broker_url.startswith(FILESYSTEM_BROKER_PREFIX):
            return self.broker_url, {}
        folder = Path(self.broker_url[len(FILESYSTEM_BROKER_PREFIX) :] or "var/broker")
        folder.mkdir(parents=True, exist_ok=True)
        # Producers write to data_folder_out and consumers read data_folder_in: one shared
        # folder makes every process see every message.
        return FILESYSTEM_BROKER_PREFIX, {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),  # kombu's default is ./control
        }
