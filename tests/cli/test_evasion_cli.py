"""The attack and defend commands, run as a user runs them, on a small saved model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from modelward.classifiers.models import SmallCNN
from modelward.classifiers.store import save_model
from modelward.classifiers.training import train_classifier
from modelward.datasets.builtin import load_digits_images

ROOT = Path(__file__).resolve().parents[2]


def modelward(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "modelward.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    split = load_digits_images(seed=0)
    folder = tmp_path_factory.mktemp("cli-model")
    save_model(train_classifier(SmallCNN(width=16), split.x_train, split.y_train, epochs=6, seed=0), folder / "cnn", {})
    return folder


def test_attack_evasion_writes_results_and_plots(model_dir: Path) -> None:
    out = model_dir / "pgd-results"
    result = modelward(
        "attack",
        "evasion",
        "--model",
        "cnn",
        "--attack",
        "pgd",
        "--epsilons",
        "0.3,0.02,0.1",
        "--samples",
        "30",
        "--steps",
        "5",
        "--format",
        "json",
        "--out",
        str(out),
        cwd=model_dir,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    epsilons = [row["epsilon"] for row in report["results"]]
    robust = [row["robust_accuracy"] for row in report["results"]]
    assert epsilons == [0.02, 0.1, 0.3]
    assert all(a >= b for a, b in pairwise(robust)) and robust[-1] < robust[0]
    assert json.loads((out / "results.json").read_text()) == report
    assert (out / "robustness-curve.png").stat().st_size > 1000


def test_black_box_attack_respects_its_budget(model_dir: Path) -> None:
    result = modelward(
        "attack",
        "evasion",
        "--model",
        "cnn",
        "--attack",
        "square",
        "--epsilons",
        "0.2",
        "--budget",
        "40",
        "--samples",
        "20",
        "--format",
        "json",
        cwd=model_dir,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["results"][0]
    assert row["queries"] <= 20 * 40
    assert 0.0 <= row["success_rate"] <= 1.0


def test_certify_reports_accuracy_falling_with_radius(model_dir: Path) -> None:
    result = modelward(
        "defend",
        "certify",
        "--model",
        "cnn",
        "--samples",
        "12",
        "--n0",
        "20",
        "--n",
        "100",
        "--radii",
        "0,0.1,0.3",
        "--format",
        "json",
        cwd=model_dir,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["certified_accuracy"]
    assert [r["radius"] for r in rows] == [0.0, 0.1, 0.3]
    assert all(a["accuracy"] >= b["accuracy"] for a, b in pairwise(rows))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack", "evasion", "--model", "cnn", "--recipe", "digits-cnn"], "exactly one of --model"),
        (["attack", "evasion", "--model", "cnn", "--epsilons", "a,b"], "comma-separated list"),
        (["attack", "evasion", "--model", "missing"], "no saved model"),
        (["attack", "evasion", "--recipe", "nope"], "unknown model recipe 'nope'"),
        (["defend", "certify", "--model", "cnn", "--sigma", "0"], "Invalid value for '--sigma'"),
    ],
)
def test_bad_arguments_are_one_line_errors(model_dir: Path, args: list[str], message: str) -> None:
    result = modelward(*args, cwd=model_dir)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_adversarial_training_reports_its_history_as_json_and_saves_the_model(tmp_path: Path) -> None:
    args = ["defend", "adversarial-training", "--epsilon", "0.1", "--epochs", "2", "--steps", "2"]
    result = modelward(*args, "--format", "json", "--out", "robust", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [row["epoch"] for row in report["history"]] == [1, 2]
    assert all(0.0 <= row["perturbed_accuracy"] <= 1.0 for row in report["history"])
    assert report["clean_test_accuracy"] > 0.3  # learnt something beyond chance (0.1) in two epochs
    assert report["clean_test_accuracy"] == report["history"][-1]["clean_accuracy"]
    assert (tmp_path / "robust.safetensors").is_file() and (tmp_path / "robust.json").is_file()
