"""Sweep cost: four values of b trained together (mpt.train.train_students, one data pass and
one teacher forward per batch, shared) against one MPT-KL run (mpt.train.train) with the same
epochs, data and teachers. Runs alternate (single, sweep, sweep, single, ...) in this one
process; medians are reported. Four separate runs would cost 4x one run.

    .venv/bin/python bench/sweep.py --arch small_cnn --steps 20 --epochs 2 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from train_throughput import cpu_name, new_mask, teachers_for, workload

from mpt.data import channel_stats
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.train import TrainingSetup, train, train_students


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--biases", default="0,1,2,4")
    parser.add_argument("--steps", type=int, default=20, help="batches of 128 per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    biases = [float(b) for b in args.biases.split(",")]
    recipe = Recipe(epochs=args.epochs, batch_size=128)
    train_set, k, k_old = workload(args.arch, args.steps * recipe.batch_size)
    mean, std = channel_stats(train_set.images)
    in_channels = train_set.images.shape[1]
    setup = TrainingSetup(
        train_set=train_set, recipe=recipe, new_mask=new_mask(k, k_old), mean=mean, std=std, seed=0, device=device
    )

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    def single() -> float:
        net = build_net(args.arch, num_classes=k, in_channels=in_channels, seed=1)
        teachers = teachers_for(args.arch, k, k_old, in_channels)
        return timed(
            lambda: train(
                dataclasses.replace(setup, teachers=teachers),
                net=net,
                method="mpt-kl",
                params=MethodParams(bias=biases[-1]),
            )
        )

    def sweep() -> float:
        nets = [build_net(args.arch, num_classes=k, in_channels=in_channels, seed=1) for _ in biases]
        teachers = teachers_for(args.arch, k, k_old, in_channels)
        return timed(
            lambda: train_students(
                dataclasses.replace(setup, teachers=teachers),
                nets=nets,
                methods=["mpt-kl"] * len(biases),
                params=[MethodParams(bias=b) for b in biases],
            )
        )

    print(
        f"{args.arch}: {len(train_set)} images x {args.epochs} epochs, batch 128, MPT-KL, b in {biases}; "
        f"device {device}; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"({cpu_name()}); load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    single()  # warm-up
    times = {"single": [], "sweep": []}
    for repeat in range(args.repeats):
        for which in ("single", "sweep") if repeat % 2 == 0 else ("sweep", "single"):
            times[which].append(single() if which == "single" else sweep())
            print(f"  repeat {repeat + 1} {which:>6}: {times[which][-1]:.2f} s", flush=True)
    one, together = statistics.median(times["single"]), statistics.median(times["sweep"])
    print(f"one MPT-KL run: {one:.2f} s; {len(biases)} students together: {together:.2f} s (medians)")
    print(
        f"time ratio sweep / single: {together / one:.2f}x (separate runs: {len(biases)}.00x); "
        f"per repeat: {', '.join(f'{s / o:.2f}' for s, o in zip(times['sweep'], times['single'], strict=True))}; "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
