"""Writes docs/API.md: every example is a curl command run against a fresh embedded stack,
shown with the output it printed (long JSON cut to its first lines).

    .venv/bin/python scripts/api_examples.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.stack import ROOT, Stack, embedded_env, running_stack

RECIPE = '{"epochs": 1, "batch_size": 64, "train_samples_per_class": 100, "eval_samples_per_class": 50}'
INTRO = """# HTTP API

JSON over HTTP; the OpenAPI schema with examples is served at `/docs` and `/openapi.json`.
Every route but `/health` needs a bearer token (`Authorization: Bearer <token>`) with the right
scope: `read` for GETs, `submit` for registering data sets and models and for scheduling or
cancelling updates, `admin` for promotion. Create tokens with
`python -m api.tokens create --name NAME --scopes read,submit`. Errors are 4xx with a body
whose `detail[].loc` names the offending field. Request bodies are bounded (a 413 past
`FLIPGUARD_MAX_JSON_BODY_BYTES`, 2 MiB, or for a model upload `FLIPGUARD_MAX_UPLOAD_BYTES`)
and JSON is parsed strictly (no NaN or Infinity). A write authenticated by the dashboard's
cookie instead of a bearer token must come from the API's own origin (`Origin` header).

| route | scope | what |
|---|---|---|
| `POST /datasets`, `GET /datasets`, `GET /datasets/{id}` | submit / read | register a data set (a worker inspects it: `pending` -> `ready` or `failed`) |
| `POST /models`, `GET /models`, `GET /models/{id}` | submit / read | register a deployed model (a flipguard safetensors file, as `mpt import` writes from a state_dict: upload or a uri under a data root) |
| `GET /models/{id}/weights`, `GET /models/{id}/lineage` | read | the weights (sha256 checked), the chain of predecessors with accuracy and NFR |
| `POST /models/{id}/promote` | admin | gated promotion; `force` needs a `reason`, which is recorded |
| `POST /updates`, `GET /updates`, `GET /updates/{id}`, `POST /updates/{id}/cancel` | submit / read | schedule (202; `Idempotency-Key` honoured), follow, cancel |
| `GET /models/{id}/flips`, `GET /models/{id}/flips/{sample}/image` | read | the regression report against the predecessor (or `?against=`), paginated flips, `?format=csv`; a flipped sample's image |
| `GET /health`, `GET /metrics` | none / read | database, broker and workers (503 if no training worker); metrics |
| `/dashboard` | read (cookie from `/dashboard/login`) | the MLOps dashboard |

The examples below were run by `scripts/api_examples.py` against the embedded stack (SQLite,
filesystem broker) on {date}; `$URL` is the API's address and `$TOKEN` an admin token.
"""

EXAMPLES = [
    ("Health", "curl -s $URL/health"),
    ("Requests without a token are refused", "curl -s -i $URL/models | head -n 1; curl -s $URL/models"),
    (
        "Register a data set",
        """curl -s -X POST $URL/datasets -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{"name": "fashion-mnist", "uri": "/usr/share/datasets/fashion-mnist", "format": "fashion-mnist"}'""",
    ),
    (
        "A data set outside the allowed roots",
        """curl -s -X POST $URL/datasets -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{"name": "etc", "uri": "/usr/share/datasets/../../../etc", "format": "imagefolder"}'""",
    ),
    ("The inspected data set", 'curl -s $URL/datasets/1 -H "Authorization: Bearer $TOKEN"'),
    (
        "Train a first version (no base model)",
        f"""curl -s -X POST $URL/updates -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"family": "fashion", "architecture": "small_cnn", "dataset_id": 1, "method": "independent",
       "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"], "recipe": {RECIPE}}}'""",
    ),
    (
        "Unknown class names are named in the error",
        """curl -s -X POST $URL/updates -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{"family": "fashion", "architecture": "small_cnn", "dataset_id": 1, "method": "independent", "classes": ["Hat"]}'""",
    ),
    (
        "Update v1 with MPT-KL, with a gate and an idempotency key",
        f"""curl -s -X POST $URL/updates -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -H 'Idempotency-Key: fashion-v2' \\
  -d '{{"base_model_id": 1, "dataset_id": 1, "method": "mpt-kl", "method_params": {{"bias": 4}},
       "recipe": {RECIPE}, "gate": {{"max_nfr": 0.5, "auto_promote": true}}}}'""",
    ),
    (
        "The same key with another body is a conflict",
        """curl -s -X POST $URL/updates -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -H 'Idempotency-Key: fashion-v2' -d '{"base_model_id": 1, "dataset_id": 1, "method": "pct-kl"}'""",
    ),
    ("Follow the job (phase, progress, per-epoch events)", 'curl -s $URL/updates/2 -H "Authorization: Bearer $TOKEN"'),
    ("Model versions", 'curl -s "$URL/models?family=fashion" -H "Authorization: Bearer $TOKEN"'),
    (
        "The flip report of v2 against v1, first three flips",
        'curl -s "$URL/models/2/flips?page_size=3" -H "Authorization: Bearer $TOKEN"',
    ),
    (
        "Only negative flips of one class",
        'curl -s "$URL/models/2/flips?kind=negative&label=Coat&page_size=2" -H "Authorization: Bearer $TOKEN" | python3 -c \'import json,sys; r=json.load(sys.stdin); print(json.dumps(r["samples"], indent=2))\'',
    ),
    ("The ledger as CSV", 'curl -s "$URL/models/2/flips?format=csv" -H "Authorization: Bearer $TOKEN" | head -n 4'),
    (
        "A flipped sample's image",
        'curl -s -o flip.png -w \'%{http_code} %{content_type}\\n\' "$URL/models/2/flips/$(curl -s "$URL/models/2/flips?page_size=1" -H "Authorization: Bearer $TOKEN" | python3 -c \'import json,sys; print(json.load(sys.stdin)["samples"]["items"][0]["sample_index"])\')/image" -H "Authorization: Bearer $TOKEN"',
    ),
    ("Lineage", 'curl -s $URL/models/2/lineage -H "Authorization: Bearer $TOKEN"'),
    (
        "Forced promotion needs a reason",
        """curl -s -X POST $URL/models/1/promote -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"force": true}'""",
    ),
    (
        "Download weights and register them as a deployed model",
        """curl -s -o v1.safetensors $URL/models/1/weights -H "Authorization: Bearer $TOKEN"
curl -s -X POST $URL/models -H "Authorization: Bearer $TOKEN" -F family=imported -F file=@v1.safetensors""",
    ),
    (
        "A pickle is never loaded",
        """python3 -c 'import pickle; open("evil.safetensors","wb").write(pickle.dumps({"a": 1}))'
curl -s -X POST $URL/models -H "Authorization: Bearer $TOKEN" -F family=evil -F file=@evil.safetensors""",
    ),
    (
        "Cancelling a finished job is a conflict",
        'curl -s -X POST $URL/updates/2/cancel -H "Authorization: Bearer $TOKEN"',
    ),
    (
        "A sweep: b in {0, 1, 2, 4} trained together, the winner chosen on validation, a gate relative to the retrain",
        f"""curl -s -X POST $URL/updates -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"base_model_id": 1, "dataset_id": 1, "method": "mpt-kl", "sweep": {{"bias": [0, 1, 2, 4]}},
       "selection": {{"policy": "min_nfr", "max_accuracy_drop": 0.005}},
       "gate": {{"max_accuracy_drop": 0.02, "max_nfr_ratio": 1.0}}, "recipe": {RECIPE}}}'""",
    ),
    (
        "A grid past the bound of 8 candidates names the field that passes it",
        """curl -s -X POST $URL/updates -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{"base_model_id": 1, "dataset_id": 1, "method": "mpt-kl", "sweep": {"bias": [0, 1, 2, 4], "tau": [2, 5, 8]}}'""",
    ),
    (
        "The sweep's candidates (validation split) and the choice, in words",
        'curl -s $URL/updates/3 -H "Authorization: Bearer $TOKEN" | python3 -c \'import json,sys; j=json.load(sys.stdin); '
        'print(json.dumps({k: j[k] for k in ("status", "sweep", "selection", "choice", "result_model_id")}, indent=2)); '
        'print(json.dumps([{k: c[k] for k in ("label", "chosen")} | {"val_accuracy": c["validation"]["accuracy"], '
        '"val_nfr_old_classes": c["validation"]["nfr_old_classes"]} for c in j["candidates"]], indent=2))\'',
    ),
    (
        "The winner's gate verdict, relative to the independent retrain",
        'curl -s $URL/models/4 -H "Authorization: Bearer $TOKEN" | python3 -c \'import json,sys; print(json.dumps(json.load(sys.stdin)["gate_verdict"], indent=2))\'',
    ),
    (
        "The client CLI's candidate table",
        "FLIPGUARD_URL=$URL FLIPGUARD_TOKEN=$TOKEN $PYTHON -m api.cli update show 3",
    ),
]
MAX_LINES = 40
# Prose shown before an example's command.
NOTES = {
    "Health": """`GET /health` needs no token. It answers 200 when the service can do its work and 503 when it
cannot. `database` is a real read, not a ping: the schema's alembic revision (`schema`) must be
the one the code migrates to, and the rows of its tables are counted (a corrupt SQLite file
fails here). `broker` is a connection to the broker. `workers` lists every worker that has not
shut down cleanly, with the queues it consumes, the seconds since its last heartbeat (written
every `FLIPGUARD_WORKER_HEARTBEAT_INTERVAL_S`, 10 s) and whether it is `live` (heard from within
`FLIPGUARD_WORKER_STALE_AFTER_S`, 60 s); `queues` counts the live workers of each queue.
`training_queue` is an error, and the status 503, while no live worker serves the training
queue. A container health check that should restart only a broken API process (not one
waiting for workers) runs `python -m api.healthcheck`: it exits 0 when `/health` answers with a
working database, whatever the workers.

""",
}


def _pretty(text: str) -> str:
    import contextlib
    import json

    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), indent=2)
    lines = text.rstrip().splitlines()
    return "\n".join(
        lines[:MAX_LINES] + ([f"... ({len(lines) - MAX_LINES} more lines)"] if len(lines) > MAX_LINES else [])
    )


def main() -> None:
    import httpx

    sections = [INTRO.replace("{date}", time.strftime("%Y-%m-%d"))]
    with (
        tempfile.TemporaryDirectory() as home,
        running_stack(embedded_env(Path(home)) | {"FLIPGUARD_DEVICE": "cpu"}, log_dir=Path(home) / "logs") as stack,
    ):
        env = {"URL": stack.url, "TOKEN": stack.token, "PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
        client = httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30)
        # The first example shows /health with the worker live.
        Stack.wait_until(lambda: client.get("/health").status_code == 200, timeout_s=120, what="a live worker")
        for title, command in EXAMPLES:
            # Let the worker finish what the next example reads.
            if "/datasets/1" in command:
                Stack.wait_until(
                    lambda: client.get("/datasets/1").json()["status"] != "pending", timeout_s=120, what="data set"
                )
            for job_id in (1, 2, 3):
                reads_job = f'base_model_id": {job_id}' in command or f"/updates/{job_id}" in command
                if (reads_job or "/models" in command) and client.get(f"/updates/{job_id}").status_code == 200:
                    Stack.wait_until(
                        lambda job_id=job_id: (
                            client.get(f"/updates/{job_id}").json()["status"] in ("succeeded", "failed", "cancelled")
                        ),
                        timeout_s=600,
                        what=f"job {job_id}",
                    )
            result = subprocess.run(
                ["bash", "-c", command],
                env=env | ({"PYTHONPATH": str(ROOT)} if "api.cli" in command else {}),
                cwd=home,
                capture_output=True,
                text=True,
                timeout=120,
            )
            sections.append(
                f"## {title}\n\n{NOTES.get(title, '')}```sh\n{command}\n```\n\n"
                f"```\n{_pretty(result.stdout + result.stderr)}\n```\n"
            )
    (ROOT / "docs" / "API.md").write_text("\n".join(sections))
    print(f"wrote {ROOT / 'docs' / 'API.md'}")


if __name__ == "__main__":
    main()
