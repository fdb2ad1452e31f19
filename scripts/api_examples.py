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
cookie instead of a bearer token must come from the API's own origin (`Origin` header). The
client CLI, `python -m api.cli`, covers every route below (see the README).

| route | scope | what |
|---|---|---|
| `POST /datasets`, `GET /datasets`, `GET /datasets/{id}` | submit / read | register a data set (a worker inspects it: `pending` -> `ready` or `failed`); the uri must be a file for `npz`, a folder for the other formats |
| `GET /datasets/{id}/samples`, `GET /datasets/{id}/samples/{n}/image` | read | a few test images per class, stored by the worker at inspection |
| `POST /models`, `GET /models`, `GET /models/{id}` | submit / read | register a deployed model (a flipguard safetensors file, as `mpt import` writes from a state_dict: upload or a uri under a data root) |
| `GET /models/{id}/weights`, `GET /models/{id}/lineage` | read | the weights (sha256 checked), the chain of predecessors with accuracy (and what it was measured on), NFR and class counts |
| `POST /models/{id}/promote` | admin | gated promotion; `force` needs a `reason`, which is recorded, as is who promoted (`promoted_by`: the token's id and name; `flipguard (automatic)` for a family's first version and `auto_promote`) |
| `POST /updates`, `GET /updates`, `GET /updates/{id}`, `POST /updates/{id}/cancel` | submit / read | schedule (202; `Idempotency-Key` honoured; `sweep` and `selection` train candidates side by side and register one, by default b in {0, 1, 2, 4} for an MPT method without `method_params.bias`), follow (a sweep's candidates and choice), cancel |
| `GET /updates/{id}/reference/weights` | read | the independent reference the job trained or reused (`reference_id`: an entry of the reference cache, not a model id) |
| `GET /models/{id}/flips`, `GET /models/{id}/flips/{sample}/image` | read | the regression report against the predecessor or `?against=` another version (a pair no job evaluated: 202 while a worker computes it, within the limits of `POST /comparisons`), paginated flips, `?format=csv`; a flipped sample's image |
| `POST /comparisons`, `GET /comparisons/{id}` | submit / read | the report of two versions whose classes nest, one of them trained by an update job here (its evaluation split serves both), computed once by a light worker (POST also retries a failed one) |
| `GET /health`, `GET /metrics` | none / read | database, broker and workers (503 if no training worker); metrics |
| `/dashboard` | read (cookie from `/dashboard/login`) | the MLOps dashboard |

**Comparing two versions.** An update job stores the report of its version against its
base. `GET /models/{id}/flips?against=OTHER` for another pair queues a light worker (task
`flipguard.compare_models`, `light` queue): it evaluates both versions on the evaluation split
of the newer version's update job (the older one's when the newer was uploaded) and stores the
report, its ledger and the flipped samples' images. Until then the answer is `202 Accepted` with
the comparison and `Location: /comparisons/{id}`. One row per ordered pair: the report is
computed once and every later request reads it. Not every pair can be compared; two limits hold,
and a pair outside them is refused at once with a 422: (1) at least one of the two versions was
trained by an update job here, since only such a job has an evaluation split (two uploaded
versions cannot be compared, as neither has one); (2) the classes nest: the other version's
classes lie within the classes of the version whose split is used (two versions of one family
do whenever one's classes include the other's, as an update keeps every class of its base;
when the newer version was trained here, its classes must include the older one's). A failed
computation reads as a 409 with its reason; `POST /comparisons` queues it again. A pending
comparison whose message was lost (a broker restarted without persistence) is sent again by the
workers' reconciler once it has waited a reconcile interval (`FLIPGUARD_RECONCILE_INTERVAL_S`,
30 s), and one whose worker died once it has run for `FLIPGUARD_COMPARISON_TIMEOUT_S` (600 s),
at most `FLIPGUARD_MAX_COMPARISON_ATTEMPTS` (3) times in all; reading it again sends nothing.

**The independent reference of a job.** `reference_id` (called `reference_model_id` before) is
the id of an entry of the reference cache, not a model version: the model trained independently
on the same data, classes, architecture, recipe and seed, which the flip report sets beside the
update (`reference` figures) and which later jobs reuse. Its weights are a download,
`reference_weights_url` (`GET /updates/{id}/reference/weights`, sha256 in `X-Checksum-Sha256`).
It is not registered as a model version: it was never a candidate for production, and one cache
entry serves several jobs.

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
    (
        "A uri of the wrong kind for its format is refused at once",
        """curl -s -X POST $URL/datasets -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{"name": "folder", "uri": "/usr/share/datasets/fashion-mnist", "format": "npz"}'""",
    ),
    ("The inspected data set", 'curl -s $URL/datasets/1 -H "Authorization: Bearer $TOKEN"'),
    (
        "A few sample images of each class, stored at inspection",
        'curl -s $URL/datasets/1/samples -H "Authorization: Bearer $TOKEN" | head -n 16',
    ),
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
        "The independent reference the update trained, as a download",
        "curl -s -o reference.safetensors -w '%{http_code} %{size_download} bytes\\n' $URL/updates/2/reference/weights -H \"Authorization: Bearer $TOKEN\"",
    ),
    (
        "v1 against v2: a pair no update job evaluated is computed on demand (202)",
        'curl -s -i "$URL/models/1/flips?against=2&page_size=1" -H "Authorization: Bearer $TOKEN" | grep -iE "^(HTTP|location)"; curl -s "$URL/models/1/flips?against=2" -H "Authorization: Bearer $TOKEN"',
    ),
    (
        "The comparison once the light worker stored its report",
        'curl -s $URL/comparisons/1 -H "Authorization: Bearer $TOKEN"',
    ),
    (
        "The report of v1 against v2, read like any other",
        'curl -s "$URL/models/1/flips?against=2&page_size=1" -H "Authorization: Bearer $TOKEN" | python3 -c \'import json,sys; r=json.load(sys.stdin); print(json.dumps({k: r[k] for k in ("model_id", "baseline_model_id", "k_old", "classes")} | {"nfr_old_classes": r["figures"]["scopes"]["old_classes"]["nfr"]}, indent=2))\'',
    ),
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
        'curl -s $URL/models/$(curl -s $URL/updates/3 -H "Authorization: Bearer $TOKEN" | python3 -c \'import json,sys; print(json.load(sys.stdin)["result_model_id"])\') -H "Authorization: Bearer $TOKEN" | python3 -c \'import json,sys; print(json.dumps(json.load(sys.stdin)["gate_verdict"], indent=2))\'',
    ),
    (
        "The client CLI's candidate table",
        "FLIPGUARD_URL=$URL FLIPGUARD_TOKEN=$TOKEN $PYTHON -m api.cli updates show 3",
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
        assert stack.token is not None  # running_stack migrated, which creates the token
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

                    def job_ended(job_id: int = job_id) -> bool:
                        return client.get(f"/updates/{job_id}").json()["status"] in ("succeeded", "failed", "cancelled")

                    Stack.wait_until(job_ended, timeout_s=600, what=f"job {job_id}")
            if "/comparisons/1" in command:
                Stack.wait_until(
                    lambda: client.get("/comparisons/1").json()["status"] in ("succeeded", "failed"),
                    timeout_s=300,
                    what="comparison 1",
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
