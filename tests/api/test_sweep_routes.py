"""Sweeps through the API: refusals naming the field, the default sweep, the candidates of a
finished job in GET /updates/{id} and on the dashboard's job and model pages."""

import io
import re

import pytest
from api_helpers import CLASSES, assert_error, model_file, ready_dataset, summary, upload
from rich.console import Console

from api.cli import jobs as cli_jobs
from api.dashboard.charts import ScatterPoint, scatter_chart
from contracts.jobs import Candidate, Gate, JobRequest, RegisteredModel, SweepResult
from contracts.selection import Figures, Selection, choose
from db.updates.completion import complete_job
from db.updates.lifecycle import claim_job
from db.updates.submission import create_job


@pytest.fixture
def base(client, tmp_path):
    return upload(client, model_file(tmp_path / "v1.safetensors")).json()


@pytest.fixture
def dataset(session):
    return ready_dataset(session)


@pytest.mark.parametrize(
    "changes, loc, message",
    [
        ({"sweep": {"bias": [0, 1, 2, 4], "tau": [1, 2, 5]}}, ["body", "sweep", "tau"], "12 candidates"),
        ({"sweep": {"bias": [0, 1, 2, 3, 4, 5, 6, 7, 8]}}, ["body", "sweep", "bias"], "at most 8"),
        ({"sweep": {"bogus": [1]}}, ["body", "sweep", "bogus"], ""),
        ({"sweep": {"bias": [0, -1]}}, ["body", "sweep", "bias", 1], ""),
        ({"sweep": {"bias": [0, 0]}}, ["body", "sweep", "bias"], "more than once"),
        ({"sweep": {"bias": [0, 1]}, "method": "pct-kl"}, ["body", "sweep", "bias"], "does not use bias"),
        ({"sweep": {"bias": [0, 1]}, "method_params": {"bias": 2}}, ["body", "sweep", "bias"], "both fixed"),
        ({"selection": {"policy": "min_nfr", "max_nfr": 0.1}}, ["body", "selection", "max_nfr"], "max_accuracy"),
        ({"selection": {"policy": "best"}}, ["body", "selection", "policy"], ""),
        ({"selection": {"policy": "min_nfr"}, "method_params": {"bias": 2}}, ["body", "selection"], "bias"),
        ({"gate": {"max_nfr_ratio": -1}}, ["body", "gate", "max_nfr_ratio"], ""),
    ],
)
def test_sweep_refusals_name_the_field(client, base, dataset, changes, loc, message):
    body = {"base_model_id": base["id"], "dataset_id": dataset.id, **changes}
    assert_error(client.post("/updates", json=body), 422, loc, message)


def test_an_mpt_update_without_b_sweeps_by_default(client, base, dataset):
    job = client.post("/updates", json={"base_model_id": base["id"], "dataset_id": dataset.id}).json()
    assert job["sweep"] == {"bias": [0.0, 1.0, 2.0, 4.0]}
    assert job["selection"] == {"policy": "min_nfr", "max_accuracy_drop": 0.005}
    explicit = client.post(
        "/updates",
        json={
            "base_model_id": base["id"],
            "dataset_id": dataset.id,
            "sweep": {"bias": [1, 2]},
            "selection": {"policy": "max_accuracy", "max_nfr": 0.02},
            "gate": {"max_accuracy_drop": 0.01, "max_nfr_ratio": 0.5},
        },
    ).json()
    assert explicit["sweep"] == {"bias": [1.0, 2.0]}
    assert explicit["selection"] == {"policy": "max_accuracy", "max_nfr": 0.02}
    assert (explicit["gate"]["max_accuracy_drop"], explicit["gate"]["max_nfr_ratio"]) == (0.01, 0.5)


FIGURES = [(0.81, 0.05), (0.80, 0.02), (0.797, 0.01), (0.78, 0.005)]
REFERENCE = (0.80, 0.04)


def finished_sweep(client, session, tmp_path) -> tuple[int, int]:
    """A sweeping update job completed through the worker's db functions: (job id, model id)."""
    base = upload(client, model_file(tmp_path / "v1.safetensors", classes=CLASSES[:3])).json()
    dataset = ready_dataset(session, classes=CLASSES)
    job, _ = create_job(
        session,
        request=JobRequest(
            base_model_id=base["id"], dataset_id=dataset.id, method="mpt-kl", gate=Gate(max_nfr_ratio=1.0)
        ),
    )
    claim_job(session, job_id=job.id, worker_id="w", heartbeat_timeout_s=60)
    labels = [f"bias={b:g}" for b in job.sweep["bias"]]
    choice = choose(Selection.from_dict(job.selection), [Figures(*f) for f in FIGURES], Figures(*REFERENCE), labels)
    model = complete_job(
        session,
        job_id=job.id,
        images_uri=None,
        ledger=[],
        report=summary(2),
        reference_report=summary(5),
        model=RegisteredModel(
            artifact_uri="models/v2.safetensors",
            sha256="0" * 64,
            architecture="small_cnn",
            classes=tuple(CLASSES),
            recipe={},
            method="mpt-kl",
        ),
        sweep=SweepResult(
            candidates=tuple(
                Candidate(
                    index=i,
                    label=label,
                    params={"bias": b},
                    validation={"accuracy": accuracy, "nfr_old_classes": nfr},
                    history=[{"epoch": 0, "val_accuracy": accuracy, "val_nfr": nfr}],
                )
                for i, (label, b, (accuracy, nfr)) in enumerate(zip(labels, job.sweep["bias"], FIGURES, strict=True))
            ),
            choice=choice,
            reference_validation={"accuracy": REFERENCE[0], "nfr_old_classes": REFERENCE[1]},
        ),
    )
    return job.id, model.id


def test_a_finished_sweep_lists_its_candidates(client, session, tmp_path):
    job_id, model_id = finished_sweep(client, session, tmp_path)
    job = client.get(f"/updates/{job_id}").json()
    assert job["result_model_id"] == model_id
    assert [(c["label"], c["chosen"]) for c in job["candidates"]] == [
        ("bias=0", False),
        ("bias=1", False),
        ("bias=2", True),
        ("bias=4", False),
    ]
    assert job["candidates"][2]["validation"] == {"accuracy": 0.797, "nfr_old_classes": 0.01}
    assert job["choice"]["winner"] == 2 and job["choice"]["qualified"] == [0, 1, 2]
    assert "bias=2" in job["choice"]["explanation"]
    verdict = client.get(f"/models/{model_id}").json()["gate_verdict"]
    assert verdict["max_nfr_ratio"] == 1.0 and verdict["nfr_ceiling"] == pytest.approx(5 / 30)


def test_dashboard_pages_draw_the_candidates(client, session, tmp_path):
    job_id, model_id = finished_sweep(client, session, tmp_path)
    for path in (f"/dashboard/jobs/{job_id}", f"/dashboard/models/{model_id}"):
        page = client.get(path)
        assert page.status_code == 200, page.text
        chart = re.search(r'<svg class="chart scatter-chart".*?</svg>', page.text, re.S).group(0)
        assert len(re.findall(r'class="mark candidate"', chart)) == 3
        assert len(re.findall(r'class="mark winner"', chart)) == 1 and 'data-name="bias=2"' in chart
        assert len(re.findall(r'class="mark reference"', chart)) == 1
        assert "lowest NFR" in page.text and 'id="candidate-table"' in page.text
    model_page = client.get(f"/dashboard/models/{model_id}").text
    assert "max NFR ratio vs retrain" in model_page and "ceiling" in model_page


def test_cli_prints_the_candidate_table(client, session, tmp_path, monkeypatch):
    job_id, _ = finished_sweep(client, session, tmp_path)
    screen = io.StringIO()
    monkeypatch.setattr(cli_jobs, "out", Console(file=screen, width=200, soft_wrap=False, highlight=False))
    cli_jobs.print_candidates(client.get(f"/updates/{job_id}").json())
    lines = screen.getvalue().splitlines()
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]] for line in lines if "│" in line
    }
    assert rows["bias=0"] == ["81.00%", "5.00%", "yes", ""]
    assert rows["bias=2"] == ["79.70%", "1.00%", "yes", "* registered"]
    assert rows["bias=4"] == ["78.00%", "0.50%", "no", ""]
    assert rows["independent retrain"] == ["80.00%", "4.00%", "-", ""]
    assert any(line.startswith("rule: min_nfr") for line in lines)
    assert any(line.startswith("choice: ") and "bias=2" in line for line in lines)
    assert cli_jobs.parse_sweep(["bias=0,1,2,4", "tau=2,5"]) == {"bias": [0, 1, 2, 4], "tau": [2, 5]}


def test_scatter_chart_marks_and_labels():
    points = [
        ScatterPoint("bias=0", 0.13, 0.35, "winner"),
        ScatterPoint("bias=1", 0.13, 0.35),  # the same figures: its name must not overprint
        ScatterPoint("bias=4", 0.05, 0.30),
        ScatterPoint("independent retrain", 0.15, 0.36, "reference"),
        ScatterPoint("nan", float("nan"), 0.3),
    ]
    svg = str(scatter_chart(points, label="candidates", x_title="NFR", y_title="accuracy"))
    assert svg.count('class="mark ') == 4  # the non-finite point is left out
    labels = re.findall(r'<text class="point-label [^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)<', svg)
    positions = {name: (float(x), float(y)) for x, y, name in labels}
    assert positions["bias=0"][0] == positions["bias=1"][0] and positions["bias=0"][1] != positions["bias=1"][1]
    # Higher accuracy is drawn higher (smaller y); lower NFR further left.
    marks = {
        name: (float(x), float(y)) for name, x, y in re.findall(r'data-name="([^"]+)" cx="([\d.]+)" cy="([\d.]+)"', svg)
    }
    assert marks["bias=0"][1] < marks["bias=4"][1] and marks["bias=4"][0] < marks["bias=0"][0]
    assert "chart-empty" in str(scatter_chart([], label="x", x_title="a", y_title="b"))
