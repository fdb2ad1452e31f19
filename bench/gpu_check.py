"""The GPU check of docs/BENCHMARKS.md's GPU section: every target with its figure and PASS or
FAIL, and the figures that have no target marked "not judged", in one device call of under 8
minutes (run it through bench/gpu_check.sh).

(a) Throughput, resnet18, batch 128, synthetic CIFAR-100-shaped data, MPT-KL: the engine
    against the paper's loop (bench/paper_loop.py's reference_run, on the GPU), measured
    interleaved in this process; target >= 4x for each of eager, graphs, packed, packed-graphs
    (the packed ones per student: a sweep of four).
(b) Sweep of four values of b: images/s per student >= 4x the paper loop, and the sweep's time
    <= 2.5x the engine's single run (packed against eager, packed-graphs against graphs; the
    side-by-side sweep is shown for comparison).
(c) Same seed, same batches: graphs against eager, and packed against side by side, within
    bf16 tolerance (relative distance of the weights and of the training loss <= 1e-2, or 3x
    the distance between two eager runs where that is larger: cuDNN's own run-to-run noise).
(d) The full-data Fashion-MNIST study, `mpt reproduce --preset quick --train-samples-per-class
    6000 --eval-samples-per-class 1000 --epochs 10 --sweep-bias` over 3 seeds with
    cuda_graphs on: target <= 4 minutes.
(e) The data paths on the device, bench/data_paths.py's comparison (compare_paths): 2,000
    Fashion-MNIST images as photos (96..384 px, the engine tests' five file kinds) fitted to
    224 px, one epoch of feed (path + device augmentation) and of training (small_cnn) on the
    resident path against the streaming one (min(16, cores) decode workers), alternating,
    medians of 3; the GPU rows of docs/BENCHMARKS.md's data-path section. No target is stated
    for them: every figure is printed "not judged".

The parts run in the order a, c, e, d (`--parts` picks and orders them): the study, the longest
and stopped by its own timeout, last.

Environment: FASHION_MNIST (or --data) names the Fashion-MNIST folder (default
.data/fashion-mnist); GPU_CHECK_TINY=1 runs small sizes that finish on a CPU in minutes, to
show the script works (nothing is judged: CPU figures are not the targets);
GPU_CHECK_STUDY_SCALE (default 1) scales the study's samples per class down for a short run
(its time is then printed, not judged); GPU_CHECK_STUDY_TIMEOUT_S (default 300) stops the
study; with OUT set, gpu_check.json (every figure and verdict) is written there after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from data_paths import PathRun, compare_paths
from harness import SWEEP_BIASES, Workload, device_name, new_mask, teachers_for, workload
from train_throughput import VARIANTS, engine_run, interleaved_rates

from mpt.data import ImageSet, channel_stats
from mpt.feed import RESIDENT, STREAMING
from mpt.formats import load_dataset
from mpt.graphs import WARMUP_STEPS
from mpt.nets import build_net
from mpt.recipe import MethodParams, Recipe
from mpt.train import TrainingSetup, train_students

THROUGHPUT_TARGET = 4.0  # engine / paper loop, images/s (per student for a sweep)
SWEEP_COST_TARGET = 2.5  # a sweep of four / one run, time
BF16_TOLERANCE = 1e-2  # relative: 2.5 units in the last place of bf16's 8-bit significand
STUDY_TARGET_S = 240.0
PARTS = ("a", "c", "d", "e")  # b comes with a


@dataclass(frozen=True)
class Sizes:
    """How much each part runs: the GPU's sizes fit one 8-minute call; the tiny ones a CPU."""

    arch: str
    steps: int  # timed batches of 128 per run, engine and paper loop alike
    reference_warmup: int  # untimed batches of the paper's loop after its workers start
    repeats: int
    study: list[str]  # `mpt reproduce` options beyond --data, --out-dir and --quiet
    paths: PathRun  # (e)


GPU_SIZES = Sizes(
    arch="resnet18",
    steps=150,
    reference_warmup=10,
    repeats=2,
    study=["--preset", "quick", "--epochs", "10", "--sweep-bias", "--seeds", "0,1,2", "--set", "cuda_graphs=true"],
    paths=PathRun(images=2000, image_size=224, workers=min(16, os.cpu_count() or 1), repeats=3),
)
TINY_SIZES = Sizes(
    arch="small_cnn",
    steps=3,
    reference_warmup=1,
    repeats=1,
    study=["--preset", "quick", "--epochs", "1", "--sweep-bias", "0,4", "--seeds", "0", "--methods", "mpt-kl"],
    paths=PathRun(images=128, sizes=(32, 96), image_size=32, workers=2, repeats=1),
)
STUDY_SAMPLES = (6000, 1000)  # per class: training, evaluation
TINY_STUDY_SAMPLES = (30, 10)


class Report:
    """Figures and verdicts, printed as they come and written to $OUT/gpu_check.json."""

    def __init__(self, *, judged: bool, out: Path | None, device: torch.device):
        self.judged, self.out = judged, out
        self.payload: dict = {"device": device_name(device), "judged": judged, "parts": {}, "targets": []}

    def figure(self, part: str, name: str, value: float | list[str] | dict) -> None:
        self.payload["parts"].setdefault(part, {})[name] = value

    def target(
        self, part: str, name: str, figure: float, bound: float, *, at_most: bool = False, unit: str = "x"
    ) -> None:
        met = figure <= bound if at_most else figure >= bound
        verdict = ("PASS" if met else "FAIL") if self.judged else "not judged (CPU figures are not the targets)"
        line = f"({part}) {name}: {figure:.3g}{unit} (target {'<=' if at_most else '>='} {bound:g}{unit}) {verdict}"
        print(line, flush=True)
        self.payload["targets"].append(
            {"part": part, "name": name, "figure": figure, "bound": bound, "at_most": at_most, "verdict": verdict}
        )

    def unjudged(self, part: str, line: str) -> None:
        """A figure without a target: printed (and kept among the figures), not judged."""
        print(f"({part}) {line}: not judged (no target stated)", flush=True)

    def failed(self, part: str, error: str) -> None:
        print(f"({part}) FAIL: {error}", flush=True)
        self.payload["targets"].append({"part": part, "name": "ran", "verdict": "FAIL", "error": error})

    def write(self) -> None:
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "gpu_check.json").write_text(json.dumps(self.payload, indent=2))


def throughput_and_sweep(report: Report, sizes: Sizes, device: torch.device, data: Path) -> None:
    """(a) and (b): every contender interleaved in this process, medians over the repeats."""
    batches = max(sizes.reference_warmup + sizes.steps, WARMUP_STEPS + 2)
    train_set, k, k_old = workload(sizes.arch, batches * 128, fashion_mnist=str(data))
    mean, std = channel_stats(train_set.images)
    common = Workload(train_set=train_set, k=k, k_old=k_old, arch=sizes.arch, mean=mean, std=std, device=device)
    working = []
    for name in ("eager", "graphs", "side-by-side", "packed", "packed-graphs"):
        changes, students = VARIANTS[name]
        try:  # long enough to capture: a variant that fails is a FAIL, the others are still measured
            engine_run(common, steps=WARMUP_STEPS + 2, changes=changes, students=students)
            working.append(name)
        except Exception:
            report.failed("a", f"{name}: {traceback.format_exc()}")
    rates, startups = interleaved_rates(
        common,
        ["reference", *working],
        steps=sizes.steps,
        warmup=sizes.reference_warmup,
        repeats=sizes.repeats,
        workers=4,
        context="spawn",
    )
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        report.figure("a", f"{name} images/s per student", {"median": median[name], "repeats": values})
    report.figure("a", "reference worker start-up s (not counted)", statistics.median(startups))
    for name in ("eager", "graphs", "packed", "packed-graphs"):
        if name in median:
            per = "per student, " if VARIANTS[name][1] > 1 else ""
            report.target(
                "a",
                f"{name} / paper loop ({per}{sizes.arch}, batch 128)",
                median[name] / median["reference"],
                THROUGHPUT_TARGET,
            )
    students = len(SWEEP_BIASES)
    for sweep, single in (("packed", "eager"), ("packed-graphs", "graphs"), ("side-by-side", "eager")):
        if sweep not in median or single not in median:
            continue
        report.target(
            "b",
            f"sweep of {students} ({sweep}) images/s per student / paper loop",
            median[sweep] / median["reference"],
            THROUGHPUT_TARGET,
        )
        # Time of the sweep over time of one run on the same batches: students x single rate / sweep rate.
        report.target(
            "b",
            f"sweep of {students} ({sweep}) time / one {single} run",
            students * median[single] / median[sweep],
            SWEEP_COST_TARGET,
            at_most=True,
        )


def _train_copy(setup: TrainingSetup, recipe: Recipe, students: int) -> tuple[list[torch.Tensor], list[float]]:
    """(each student's weights and buffers flattened, each student's last-epoch loss)."""
    nets = [build_net("small_cnn", num_classes=10, in_channels=1, seed=1) for _ in range(students)]
    biases = SWEEP_BIASES[:students] if students > 1 else (4.0,)
    histories = train_students(
        replace(setup, recipe=recipe),
        nets=nets,
        methods=["mpt-kl"] * students,
        params=[MethodParams(bias=b) for b in biases],
    )
    flat = [torch.cat([v.detach().float().flatten().cpu() for v in net.state_dict().values()]) for net in nets]
    return flat, [history[-1]["train_loss"] for history in histories]


def _distance(a: tuple[list[torch.Tensor], list[float]], b: tuple[list[torch.Tensor], list[float]]) -> float:
    """The larger of the weights' and the losses' relative distance, worst student."""
    weights = max(float((x - y).norm() / x.norm()) for x, y in zip(a[0], b[0], strict=True))
    losses = max(abs(x - y) / abs(x) for x, y in zip(a[1], b[1], strict=True))
    return max(weights, losses)


def equality(report: Report, device: torch.device, data: Path) -> None:
    """(c): two epochs of small_cnn on Fashion-MNIST (the cosine schedule changes the learning
    rate between them), each epoch warm-up, capture, replays and a short last batch."""
    full_batches = WARMUP_STEPS + 4
    train = load_dataset(str(data)).train
    assert isinstance(train, ImageSet)  # load_dataset decodes
    train_set = train.take(torch.arange(full_batches * 128 + 37))
    mean, std = channel_stats(train_set.images)
    base = Recipe(epochs=2, batch_size=128)
    setup = TrainingSetup(
        train_set=train_set,
        new_mask=new_mask(10, 5),
        mean=mean,
        std=std,
        recipe=base,
        seed=3,
        teachers=teachers_for("small_cnn", 10, 5, 1),
        device=device,
    )
    eager, side_by_side = _train_copy(setup, base, 1), _train_copy(setup, replace(base, pack_students="off"), 2)
    # name -> (the run compared against, the recipe of the run compared, its students)
    pairs = {
        "eager again (noise floor)": (eager, base, 1),
        "graphs": (eager, replace(base, cuda_graphs=True), 1),
        "packed vs side by side": (side_by_side, replace(base, pack_students="on"), 2),
        "packed-graphs vs side by side": (side_by_side, replace(base, pack_students="on", cuda_graphs=True), 2),
    }
    distances = {}
    for name, (baseline, recipe, students) in pairs.items():
        try:  # one comparison that fails is a FAIL; the others still run
            distances[name] = _distance(baseline, _train_copy(setup, recipe, students))
        except Exception:
            report.failed("c", f"{name}: {traceback.format_exc()}")
    for name, value in distances.items():
        report.figure("c", f"relative distance, {name}", value)
    bound = max(BF16_TOLERANCE, 3 * distances.get("eager again (noise floor)", 0.0))
    for name in ("graphs", "packed vs side by side", "packed-graphs vs side by side"):
        if name in distances:
            report.target("c", f"relative distance, {name}", distances[name], bound, at_most=True, unit="")


def study(report: Report, sizes: Sizes, data: Path, tiny: bool) -> None:
    """(d): `mpt reproduce` in a child process, stopped after GPU_CHECK_STUDY_TIMEOUT_S."""
    scale = float(os.environ.get("GPU_CHECK_STUDY_SCALE", "1"))
    train_samples, eval_samples = TINY_STUDY_SAMPLES if tiny else STUDY_SAMPLES
    timeout = float(os.environ.get("GPU_CHECK_STUDY_TIMEOUT_S", "300"))
    with tempfile.TemporaryDirectory() as out_dir:
        command = [
            sys.executable,
            "-m",
            "mpt.cli",
            "reproduce",
            "--data",
            str(data),
            "--train-samples-per-class",
            str(max(1, round(train_samples * scale))),
            "--eval-samples-per-class",
            str(max(1, round(eval_samples * scale))),
            *sizes.study,
            "--quiet",
            "--out-dir",
            out_dir,
        ]
        print("(d) " + " ".join(command), flush=True)
        report.figure("d", "command", command)
        started = time.perf_counter()
        try:
            subprocess.run(command, check=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            report.failed("d", f"the study ran past {timeout:.0f} s and was stopped")
            return
        elapsed = time.perf_counter() - started
    report.figure("d", "wall s", elapsed)
    if scale == 1 and not tiny:
        report.target(
            "d", "full-data Fashion-MNIST study, 3 seeds", elapsed / 60, STUDY_TARGET_S / 60, at_most=True, unit=" min"
        )
    else:
        sized = f"scale {scale:g}" + (", tiny sizes" if tiny else "")
        print(f"(d) study at {sized}: {elapsed:.1f} s (the target applies to the full study: not judged)", flush=True)


def path_comparison(report: Report, sizes: Sizes, device: torch.device, data: Path) -> None:
    """(e): bench/data_paths.py's resident and streaming paths on the device."""
    run = sizes.paths
    figures = compare_paths(run, device, str(data))
    report.figure("e", "run", asdict(run))
    report.figure("e", "photos written s (not counted)", figures.write_s)
    report.figure("e", "resident one-off decode s", figures.decode_s)
    print(
        f"(e) {figures.photos} photos ({run.sizes[0]}..{run.sizes[1]} px) -> {figures.shape}, batch "
        f"{run.batch_size}, {run.train_crop}, {run.workers} decode workers, medians of {run.repeats}; written in "
        f"{figures.write_s:.1f} s, resident one-off decode {figures.decode_s:.1f} s "
        f"({figures.photos / figures.decode_s:.0f} images/s)",
        flush=True,
    )
    for what in ("feed", "train"):
        for path in (RESIDENT, STREAMING):
            median = figures.median(path, what)
            report.figure("e", f"{what} {path} images/s", {"median": median, "repeats": figures.rates[path][what]})
        report.figure("e", f"{what} streaming / resident", figures.ratio(what))
        report.unjudged(
            "e",
            f"{what}: resident {figures.median(RESIDENT, what):.0f} images/s, streaming "
            f"{figures.median(STREAMING, what):.0f} images/s, streaming / resident {figures.ratio(what):.3g}x",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("FASHION_MNIST", ".data/fashion-mnist"))
    parser.add_argument("--parts", default="a,c,e,d", help="a (with b), c, d, e; in the order given")
    args = parser.parse_args()
    names = args.parts.split(",")
    if unknown := [name for name in names if name not in PARTS]:
        parser.error(f"no part {', '.join(unknown)}: the parts are {', '.join(PARTS)}")
    tiny = os.environ.get("GPU_CHECK_TINY") == "1"
    data = Path(args.data)
    if not (data / "train-images-idx3-ubyte.gz").exists():
        parser.error(f"no Fashion-MNIST in {data} (copy /usr/share/datasets/fashion-mnist there)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not tiny:
        parser.error("no GPU here: run with GPU_CHECK_TINY=1 to try the script on the CPU")
    sizes = TINY_SIZES if tiny else GPU_SIZES
    report = Report(
        judged=device.type == "cuda" and not tiny,
        out=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
        device=device,
    )
    print(f"gpu_check on {report.payload['device']}{'; TINY sizes, figures not judged' if tiny else ''}", flush=True)
    parts = {
        "a": lambda: throughput_and_sweep(report, sizes, device, data),
        "c": lambda: equality(report, device, data),
        "d": lambda: study(report, sizes, data, tiny),
        "e": lambda: path_comparison(report, sizes, device, data),
    }
    for name in names:
        started = time.perf_counter()
        try:
            parts[name]()
        except Exception:  # a broken part is a FAIL with its traceback; the other parts still run
            report.failed(name, traceback.format_exc())
        report.figure(name, "part wall s", time.perf_counter() - started)
        report.write()
    verdicts = [t["verdict"] for t in report.payload["targets"]]
    print(f"gpu_check: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL of {len(verdicts)} targets")


if __name__ == "__main__":
    main()
