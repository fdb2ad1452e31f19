"""The main job, end to end on the embedded default (no servers needed):

start the stack (SQLite, filesystem broker, local artifacts; API + one worker), register
Fashion-MNIST, train v1 on classes 0-4 through the API, update it to classes 0-9 with MPT-KL
while showing progress, print the flip report beside the independent retrain's, and stop.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.cli.app import main as client_cli
from api.cli.client import ExitCode
from contracts.data_formats import DatasetFormat
from contracts.methods import UpdateMethod
from scripts.stack import Stack, embedded_env, running_stack

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def request(client: httpx.Client, method: str, path: str, *, json: dict | None = None) -> dict:
    """Call the API and return its JSON; stop the demo with the API's message otherwise."""
    response = client.request(method, path, json=json)
    if response.is_error:
        raise SystemExit(f"{method} {path}: HTTP {response.status_code}: {response.text}")
    return response.json()


def cli(stack: Stack, *args: str, allowed: tuple[ExitCode, ...] = (ExitCode.OK,)) -> int:
    """Run a command of the client CLI (`python -m api.cli`) against the stack."""
    code = client_cli(["--url", stack.url, "--token", stack.token or "", *args])
    if code not in allowed:
        raise SystemExit(f"python -m api.cli {' '.join(args)} exited {code}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path("var/demo"), help="wiped and recreated")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-samples-per-class", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    shutil.rmtree(args.home, ignore_errors=True)
    recipe = {"epochs": args.epochs, "train_samples_per_class": args.train_samples_per_class, "lr": 0.05}

    with running_stack(embedded_env(args.home) | {"FLIPGUARD_DEVICE": "cpu"}, log_dir=args.home / "logs") as stack:
        print(f"embedded stack up at {stack.url} (logs in {args.home / 'logs'})")
        with httpx.Client(base_url=stack.url, timeout=30, headers=stack.headers) as client:
            dataset = request(
                client,
                "POST",
                "/datasets",
                json={"name": "fashion-mnist", "uri": FASHION_MNIST, "format": DatasetFormat.FASHION_MNIST},
            )
            dataset = Stack.wait_until(
                lambda: (d := request(client, "GET", f"/datasets/{dataset['id']}"))["status"] != "pending" and d,
                timeout_s=120,
                what="the data set inspection",
            )
            print(
                f"data set {dataset['id']}: {dataset['train_size']} train / {dataset['test_size']} test images, "
                f"classes {', '.join(dataset['classes'])}"
            )

            old_classes = dataset["classes"][:5]
            print(f"\n1. train v1 on {', '.join(old_classes)}")
            job = request(
                client,
                "POST",
                "/updates",
                json={
                    "family": "fashion",
                    "architecture": "small_cnn",
                    "dataset_id": dataset["id"],
                    "classes": old_classes,
                    "method": UpdateMethod.INDEPENDENT,
                    "recipe": recipe,
                    "seed": 0,
                },
            )
            cli(stack, "updates", "watch", str(job["id"]), "--interval", "1")
            v1 = request(client, "GET", f"/updates/{job['id']}")["result_model_id"]

            print("\n2. update v1 to all ten classes with mpt-kl (the independent reference trains first)")
            job = request(
                client,
                "POST",
                "/updates",
                json={
                    "base_model_id": v1,
                    "dataset_id": dataset["id"],
                    "method": UpdateMethod.MPT_KL,
                    "recipe": recipe,
                    "seed": 0,
                    "gate": {"max_nfr": 0.10, "auto_promote": True},
                },
            )
            # Exit code 3: the gate rejected v2 (the demo goes on and shows why).
            cli(
                stack,
                "updates",
                "watch",
                str(job["id"]),
                "--interval",
                "1",
                allowed=(ExitCode.OK, ExitCode.GATE_REJECTED),
            )
            v2 = request(client, "GET", f"/updates/{job['id']}")["result_model_id"]

            print("\n3. the flip report (model = MPT-KL, reference = the independent retrain)")
            cli(stack, "flips", str(v2))
            model = request(client, "GET", f"/models/{v2}")
            print(f"\ngate: {'passed' if model['gate_verdict']['passed'] else 'failed'} -> v2 is {model['status']}")
        print("stopping the stack")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
