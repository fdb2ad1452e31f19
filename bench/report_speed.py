"""Report speed: building a flip report and its ledger for N evaluation samples against the
model inference that feeds it, in one process. The report should cost a small fraction of
inference (vectorised counts, no per-sample Python except the ledger rows of the flips).

    .venv/bin/python bench/report_speed.py --samples 50000 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mpt.data import ImageSet
from mpt.flips import flip_report
from mpt.nets import build_net
from mpt.train import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    k, k_old = 10, 5
    images = torch.randint(0, 256, (args.samples, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, k, (args.samples,), generator=generator)
    evaluation = ImageSet(images, labels, [f"c{i}" for i in range(k)])
    old_net = build_net(args.arch, num_classes=k_old, in_channels=1, seed=0).eval()
    new_net = build_net(args.arch, num_classes=k, in_channels=1, seed=1).eval()
    device = torch.device("cpu")

    inference, report, ledger_rows = [], [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        old_logits = predict(old_net, evaluation, mean=(0.5,), std=(0.25,), device=device)
        new_logits = predict(new_net, evaluation, mean=(0.5,), std=(0.25,), device=device)
        inference.append(time.perf_counter() - started)
        started = time.perf_counter()
        _, ledger = flip_report(
            labels=labels,
            old_logits=old_logits,
            new_logits=new_logits,
            classes=[f"c{i}" for i in range(k)],
            k_old=k_old,
        )
        report.append(time.perf_counter() - started)
        started = time.perf_counter()
        rows = ledger.rows()
        ledger_rows.append(time.perf_counter() - started)
    inference_s, report_s, rows_s = (statistics.median(v) for v in (inference, report, ledger_rows))
    print(f"samples {args.samples}, flips {len(rows)} ({args.arch}, {torch.get_num_threads()} thread(s))")
    print(f"inference of both models  {inference_s * 1000:9.1f} ms")
    print(f"flip report (summary)     {report_s * 1000:9.1f} ms  = {report_s / inference_s:.5f} x inference")
    print(f"ledger rows (JSON-ready)  {rows_s * 1000:9.1f} ms  = {rows_s / inference_s:.5f} x inference")


if __name__ == "__main__":
    main()
