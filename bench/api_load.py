"""API load: a bounded run on loopback against a real API server (uvicorn, PostgreSQL, Redis;
no worker) whose database holds a flip report with thousands of ledger rows.

Four scenarios, each run for a fixed number of requests (or until a time cap) at the same
concurrency, interleaved in rounds (health, flips, dashboard, submit, health, ...):
`GET /health` (the baseline: the same server's most trivial route, on a stack that a pretend
training worker's heartbeats keep healthy), `GET /models/{id}/flips`
(report summary, reference figures and the first page of flips), the dashboard's flip report
page (`GET /dashboard/models/{id}/flips`), and `POST /updates` with a distinct
Idempotency-Key per request. Prints requests served, errors, p50/p99 latency, throughput and
the throughput ratios against /health (issue 6 asks flips/health >= 0.5).

    .venv/bin/python bench/api_load.py --requests 1500 --concurrency 16 --ledger-rows 5000
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.flips import FlipSummary, LedgerRow
from contracts.jobs import Gate, JobRequest, RegisteredModel
from contracts.methods import UpdateMethod
from contracts.tasks import TRAINING_QUEUE
from db.base import make_engine, make_session_factory
from db.datasets.models import DatasetFormat
from db.datasets.service import create_dataset, mark_dataset_ready
from db.model_versions.service import register_uploaded_model
from db.settings import Settings
from db.updates.completion import complete_job
from db.updates.lifecycle import claim_job
from db.updates.submission import create_job
from scripts.stack import Stack
from worker.liveness import Liveness

CLASSES = [f"class{i}" for i in range(10)]
K_OLD = 5


def scope_figures(rows: list[LedgerRow], samples: int) -> dict:
    negative = sum(row["kind"] == "negative" for row in rows)
    positive = len(rows) - negative
    old_correct = samples // 2 + negative
    new_correct = samples // 2 + positive
    return {
        "samples": samples,
        "negative_flips": negative,
        "positive_flips": positive,
        "old_correct": old_correct,
        "new_correct": new_correct,
        "nfr": negative / samples,
        "pfr": positive / samples,
        "relative_nfr": (negative / samples) / 0.1,
        "old_accuracy": old_correct / samples,
        "new_accuracy": new_correct / samples,
    }


def synthetic_report(ledger_rows: int) -> tuple[FlipSummary, list[LedgerRow]]:
    """A flip report summary as mpt.flips makes it and its ledger, with `ledger_rows` flips."""
    samples = ledger_rows * 4
    ledger: list[LedgerRow] = []
    for index in range(ledger_rows):
        label = index % len(CLASSES)
        negative = index % 3 != 0
        wrong = (label + 1) % len(CLASSES)
        ledger.append(
            LedgerRow(
                sample_index=index * 4,
                label=label,
                old_prediction=label if negative else wrong,
                new_prediction=wrong if negative else label,
                old_confidence=0.8,
                new_confidence=0.2,
                kind="negative" if negative else "positive",
            )
        )
    old_rows = [row for row in ledger if row["label"] < K_OLD]
    summary = {
        "classes": CLASSES,
        "k_old": K_OLD,
        "scopes": {"all": scope_figures(ledger, samples), "old_classes": scope_figures(old_rows, samples // 2)},
        "new_class_accuracy": 0.7,
        "new_class_samples": samples // 2,
        "both_correct": samples // 3,
        "both_wrong": samples // 10,
        "btc": 0.9,
        "bec": 0.5,
        "intrusion_flips": 0,
        "per_class": [
            {
                "index": i,
                "name": name,
                "is_new": i >= K_OLD,
                "samples": samples // 10,
                "old_correct": 100,
                "new_correct": 110,
                "negative_flips": 10,
                "positive_flips": 5,
                "intrusion_flips": 0,
                "nfr": 0.05,
                "old_accuracy": 0.5,
                "new_accuracy": 0.55,
            }
            for i, name in enumerate(CLASSES)
        ],
        "transitions": [
            {"kind": "negative", "old_prediction": 0, "new_prediction": 1, "count": 10, "intrusion": False}
        ],
    }
    return FlipSummary.from_dict(summary), ledger


def seed(database_url: str, *, ledger_rows: int) -> tuple[int, int]:
    """A ready data set, a base model and its update with a report of `ledger_rows` flips,
    through the db service functions the worker uses; returns (data set id, updated model id)."""
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            dataset = create_dataset(session, name="bench", uri="/data/bench", format=DatasetFormat.NPZ)
            mark_dataset_ready(
                session,
                dataset_id=dataset.id,
                classes=CLASSES,
                train_size=50000,
                test_size=ledger_rows * 4,
                image_shape=[3, 32, 32],
                digest="bench",
            )
            base = register_uploaded_model(
                session,
                family="bench",
                architecture="small_cnn",
                classes=CLASSES[:K_OLD],
                artifact_uri="models/base.safetensors",
                sha256="0" * 64,
            )
            job, _ = create_job(
                session,
                request=JobRequest(
                    base_model_id=base.id,
                    family=None,
                    architecture=None,
                    dataset_id=dataset.id,
                    classes=None,
                    method=UpdateMethod.MPT_KL,
                    method_params={},
                    recipe={},
                    gate=Gate(),
                    seed=0,
                ),
            )
            claim_job(session, job_id=job.id, worker_id="bench", heartbeat_timeout_s=60)
            summary, ledger = synthetic_report(ledger_rows)
            model = complete_job(
                session,
                job_id=job.id,
                images_uri=None,
                ledger=ledger,
                report=summary,
                reference_report=summary,
                model=RegisteredModel(
                    artifact_uri="models/v2.safetensors",
                    sha256="0" * 64,
                    architecture="small_cnn",
                    classes=tuple(CLASSES),
                    recipe={},
                    method=UpdateMethod.MPT_KL,
                ),
            )
            return dataset.id, model.id
    finally:
        engine.dispose()


@contextmanager
def training_worker_heartbeat(database_url: str) -> Iterator[None]:
    """A (pretend) training worker's heartbeats while the load runs, by the workers' own
    `Liveness`: without a live one /health answers 503 (docs/ARCHITECTURE.md, "Limits and
    guards"), and the baseline is a healthy stack."""
    engine = make_engine(database_url)
    liveness = Liveness(
        name="bench-worker",
        queues=[TRAINING_QUEUE],
        settings=Settings(database_url=database_url),
        session_factory=make_session_factory(engine),
    ).start()
    try:
        yield
    finally:
        liveness.stop()
        engine.dispose()


async def run_scenario(
    client: httpx.AsyncClient,
    make_request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    *,
    requests: int,
    concurrency: int,
    time_cap_s: float,
) -> dict:
    """`requests` calls of make_request() by `concurrency` tasks, stopping early at the time cap."""
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.perf_counter() + time_cap_s

    async def one_client() -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            started = time.perf_counter()
            try:
                response = await make_request(client)
                if response.status_code >= 400:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(repr(error))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "served": len(latencies) - len(errors),
        "errors": len(errors),
        "first_error": errors[:1],
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


async def load(stack: Stack, *, dataset_id: int, model_id: int, args: argparse.Namespace) -> dict[str, list[dict]]:
    submit_body = {"base_model_id": model_id, "dataset_id": dataset_id, "method": "mpt-kl", "recipe": {"epochs": 1}}
    scenarios = {
        "health": lambda client: client.get("/health"),
        "flips": lambda client: client.get(f"/models/{model_id}/flips", params={"page_size": 50}),
        # The dashboard's flip report page: charts from the aggregates, one gallery page.
        "dashboard": lambda client: client.get(f"/dashboard/models/{model_id}/flips"),
        "submit": lambda client: client.post(
            "/updates", json=submit_body, headers={"Idempotency-Key": uuid.uuid4().hex}
        ),
    }
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    results: dict[str, list[dict]] = {name: [] for name in scenarios}
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=60, limits=limits) as client:
        for make_request in scenarios.values():  # warm-up: connections, caches
            await run_scenario(
                client, make_request, requests=2 * args.concurrency, concurrency=args.concurrency, time_cap_s=10
            )
        for _ in range(args.rounds):
            for name, make_request in scenarios.items():
                results[name].append(
                    await run_scenario(
                        client,
                        make_request,
                        requests=args.requests // args.rounds,
                        concurrency=args.concurrency,
                        time_cap_s=args.time_cap_s / (3 * args.rounds),
                    )
                )
    return results


def merged(rounds: list[dict]) -> dict:
    served = sum(r["served"] for r in rounds)
    errors = sum(r["errors"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    return {
        "served": served,
        "errors": errors,
        "rps": (served + errors) / seconds,
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds),
        "first_error": next((r["first_error"] for r in rounds if r["first_error"]), []),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500, help="per scenario, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three scenarios")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--ledger-rows", type=int, default=5000)
    parser.add_argument("--time-cap-s", type=float, default=180, help="for all measured requests together")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    database = f"flipguard_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    home = Path(tempfile.mkdtemp(prefix="flipguard-bench-"))
    env = {
        "FLIPGUARD_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        "FLIPGUARD_BROKER_URL": args.redis_url,
        "FLIPGUARD_ARTIFACT_ROOT": str(home / "artifacts"),
    }
    stack = Stack(env, log_dir=home / "logs")  # binds 127.0.0.1 only
    try:
        stack.migrate()
        dataset_id, model_id = seed(env["FLIPGUARD_DATABASE_URL"], ledger_rows=args.ledger_rows)
        stack.start_api()
        with training_worker_heartbeat(env["FLIPGUARD_DATABASE_URL"]):
            results = {
                name: merged(rounds)
                for name, rounds in asyncio.run(
                    load(stack, dataset_id=dataset_id, model_id=model_id, args=args)
                ).items()
            }
    finally:
        stack.stop()
        with psycopg.connect(args.pg_admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()

    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}; ledger rows {args.ledger_rows}, "
        f"concurrency {args.concurrency}, {args.rounds} interleaved rounds"
    )
    print(f"{'scenario':<8} {'served':>7} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, figures in results.items():
        print(
            f"{name:<8} {figures['served']:>7} {figures['errors']:>6} {figures['rps']:>8.1f} "
            f"{figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f}"
        )
        if figures["first_error"]:
            print(f"  first error: {figures['first_error'][0]}")
    for name in ("flips", "dashboard", "submit"):
        print(f"throughput ratio {name}/health: {results[name]['rps'] / results['health']['rps']:.2f}")
    if any(figures["errors"] for figures in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
