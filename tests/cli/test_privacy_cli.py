"""The privacy attack commands (membership, extraction, inversion, attribute), run as a user runs them.

The happy paths run ``python -m modelward.cli`` as a real subprocess on small saved models with tiny
settings; help texts and argument errors go through the same entry point (``main``) in-process,
which is what turns every failure into one line and an exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from modelward.classifiers.models import MLP, SmallCNN
from modelward.classifiers.store import save_model
from modelward.classifiers.training import train_classifier
from modelward.cli.main import main
from modelward.datasets.builtin import load_breast_cancer_table, load_digits_images

ROOT = Path(__file__).resolve().parents[2]
UNRESOLVABLE = "unresolvable (needs ≥ 1000 non-members)"


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


def in_process(
    args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run the console entry point in this process; returns the exit code, stdout and stderr."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["modelward", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    out, err = capsys.readouterr()
    code = stopped.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small digits CNN (cnn) and a breast-cancer MLP (mlp), saved as a user would."""
    folder = tmp_path_factory.mktemp("privacy-cli")
    digits = load_digits_images(seed=0)
    torch.manual_seed(0)
    cnn = SmallCNN(width=16)
    save_model(train_classifier(cnn, digits.x_train, digits.y_train, epochs=6, seed=0), folder / "cnn", {})
    table = load_breast_cancer_table(seed=0)
    torch.manual_seed(0)
    mlp = MLP(30, 2)
    save_model(train_classifier(mlp, table.x_train, table.y_train, epochs=40, seed=0), folder / "mlp", {})
    return folder


# --------------------------------------------------------------------------------------------
# membership
# --------------------------------------------------------------------------------------------
def test_membership_reports_auc_unresolvable_low_fpr_a_roc_and_reuses_reference_models(model_dir: Path) -> None:
    out = model_dir / "lira"
    args = ["attack", "membership", "--model", "cnn", "--references", "2", "--epochs", "2"]
    result = modelward(*args, "--format", "json", "--out", str(out), cwd=model_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["label"] == "LiRA offline, fixed variance" and report["mode"] == "offline"
    assert (report["data"]["members"], report["data"]["nonmembers"]) == (1257, 540)
    assert 0.0 <= report["auc"] <= 1.0 and 0.5 <= report["balanced_accuracy"] <= 1.0
    low, one = report["tpr_at_fpr"]
    # 540 non-members cannot resolve 0.1%: no number is given, only why.
    assert low["fpr"] == 0.001 and low["tpr"] is None and not low["resolvable"]
    assert low["display"] == UNRESOLVABLE and "needs at least 1000" in low["reason"]
    assert one["fpr"] == 0.01 and one["resolvable"] and 0.0 <= one["tpr"] <= 1.0
    assert one["achieved_fpr"] <= 0.01 and one["display"] == f"{one['tpr']:.4f}"
    leaking = report["top_leaking"]
    assert len(leaking) == 10 and len(set(leaking)) == 10 and all(0 <= i < 1257 for i in leaking)  # members only
    scores = report["top_leaking_scores"]
    assert all(a >= b for a, b in pairwise(scores))  # most exposed first
    if one["tpr"] > 0:  # some member is called at 1% FPR: the most exposed one is among them
        assert scores[0] >= one["threshold"]
    assert report["queries"] == 1797  # one target query per population record
    references = report["references"]
    assert (references["count"], references["trained"], references["cached"]) == (2, 2, 0)
    assert references["params"]["width"] == 16  # shaped like the target
    assert json.loads((out / "results.json").read_text()) == report
    assert (out / "roc.png").stat().st_size > 1000
    assert len(list((model_dir / ".modelward-cache" / "references" / "models").glob("*.safetensors"))) == 2

    # Another attack on the same settings takes the reference models from the cache; a table this time.
    args = ["attack", "membership", "--model", "cnn", "--references", "2", "--epochs", "2", "--attack", "shadow"]
    result = modelward(*args, "--fpr", "0.01,0.001,0.05", cwd=model_dir)
    assert result.returncode == 0, result.stderr
    assert "shadow models" in result.stdout
    assert "2 (0 trained, 2 from the cache)" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "TPR at FPR" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["TPR at FPR 0.1%", "TPR at FPR 1%", "TPR at FPR 5%"]
    assert UNRESOLVABLE in rows[0] and "unresolvable" not in rows[1] + rows[2]


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------
def test_extraction_from_labels_only_rises_with_queries_and_plots_its_curve(model_dir: Path) -> None:
    out = model_dir / "extraction"
    args = ["attack", "extraction", "--model", "cnn", "--budget", "240", "--rounds", "3", "--epochs", "5"]
    result = modelward(*args, "--harden", "label-only", "--format", "json", "--out", str(out), cwd=model_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == "labels" and report["hardening"] == [{"kind": "label_only"}]
    curve = report["curve"]
    assert [point["queries"] for point in curve] == [60, 120, 240]
    fidelity = [point["fidelity"] for point in curve]
    assert all(0.0 <= f <= 1.0 for f in fidelity)
    assert all(b >= a for a, b in pairwise(fidelity)) and fidelity[-1] > fidelity[0]  # more queries, better copy
    assert report["fidelity"] == fidelity[-1] and report["queries"] == 240 and report["stop_reason"] is None
    # The attacker's data and the evaluation data are disjoint halves of x_test.
    data = report["data"]
    assert data["attacker_images"] + data["evaluation_images"] == 540
    assert data["attacker_inputs"] == 9 * data["attacker_images"]  # the pool: each image and its 8 pixel shifts
    assert json.loads((out / "results.json").read_text()) == report
    assert (out / "extraction-curve.png").stat().st_size > 1000


def test_extraction_through_score_hardening_keeps_learning_from_scores(model_dir: Path) -> None:
    args = ["attack", "extraction", "--model", "cnn", "--strategy", "random", "--budget", "100", "--rounds", "2"]
    harden = ["--harden", "round:1", "--harden", "noise:0.05", "--harden", "reverse-sigmoid:0.5", "--harden", "top-k:3"]
    result = modelward(
        *args, "--epochs", "2", *harden, "--output", "scores", "--seed", "3", "--format", "json", cwd=model_dir
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == "scores" and report["strategy"] == "random"
    assert report["hardening"] == [
        {"kind": "rounding", "decimals": 1},
        {"kind": "gaussian_noise", "sigma": 0.05, "seed": 3},
        {"kind": "reverse_sigmoid", "beta": 0.5},
        {"kind": "top_k", "k": 3},
    ]
    assert [point["queries"] for point in report["curve"]] == [50, 100]
    assert report["data"]["attacker_inputs"] == 0  # random queries need no attacker data
    assert 0.0 <= report["fidelity"] <= 1.0


# --------------------------------------------------------------------------------------------
# inversion and attribute inference
# --------------------------------------------------------------------------------------------
def test_inversion_reconstructs_classes_closer_to_their_means_than_random_images(model_dir: Path) -> None:
    out = model_dir / "inversion"
    args = ["attack", "inversion", "--model", "cnn", "--steps", "40", "--classes", "0,1,7"]
    result = modelward(*args, "--format", "json", "--out", str(out), cwd=model_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == [0, 1, 7] and report["gradient"] == "white-box"
    similarity = report["similarity"]
    assert len(similarity["per_class_correlation"]) == 3
    assert similarity["correlation"] > similarity["random_correlation"] + 0.1
    assert similarity["chance"] == pytest.approx(1 / 3)
    assert 0 < report["queries"] <= 3 * 40
    assert json.loads((out / "results.json").read_text()) == report
    assert (out / "inversion.png").stat().st_size > 1000


def test_attribute_inference_on_the_table_reports_attack_beside_baseline(model_dir: Path) -> None:
    out = model_dir / "attribute"
    result = modelward(
        "attack", "attribute", "--model", "mlp", "--column", "Worst_Area", "--format", "json", "--out", str(out),
        cwd=model_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["column"], report["column_name"]) == (23, "worst area")
    assert report["victims"] == 398 and report["attacker_records"] == 171  # x_train are the victims
    assert report["queries"] == 398 + 171
    for key in ("attack_accuracy", "baseline_accuracy", "attack_auc", "baseline_auc", "majority_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    assert report["advantage"] == pytest.approx(report["attack_accuracy"] - report["baseline_accuracy"])
    assert report["baseline_accuracy"] > report["majority_accuracy"]  # the other columns already tell a lot
    assert "worst area" not in report["known_column_names"] and len(report["known_column_names"]) == 29
    assert json.loads((out / "results.json").read_text()) == report


def test_inversion_on_the_table_is_attribute_inference(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["attack", "inversion", "--data", "breast-cancer", "--column", "23", "--model", "mlp", "--format", "json"]
    code, out, err = in_process(args, model_dir, monkeypatch, capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["column_name"] == "worst area" and report["method"] == "scores"
    assert report["model"] == str((model_dir / "mlp").resolve())


# --------------------------------------------------------------------------------------------
# help and bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["membership", "extraction", "inversion", "attribute"])
def test_help_describes_each_command(
    command: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = in_process(["attack", command, "--help"], model_dir, monkeypatch, capsys)
    assert code == 0
    assert out.startswith("Usage:") and "--seed" in out and "--format" in out
    assert len(out.split("Options:")[0].split()) > 40  # a real description, not a one-liner


def test_dp_train_is_still_registered(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = in_process(["defend", "dp-train", "--help"], model_dir, monkeypatch, capsys)
    assert code == 0 and "DP-SGD" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack", "extraction", "--model", "cnn", "--strategy", "nope"], "Invalid value for '--strategy'"),
        (["attack", "extraction", "--model", "cnn", "--harden", "nonsense"], "unknown hardening 'nonsense'"),
        (["attack", "extraction", "--model", "cnn", "--harden", "top-k:0"], "top_k needs k >= 1"),
        (["attack", "extraction", "--model", "cnn", "--harden", "noise:lots"], "'noise:lots': malformed value"),
        (["attack", "extraction", "--model", "cnn", "--budget", "-5"], "Invalid value for '--budget'"),
        (["attack", "extraction", "--model", "missing"], "no saved model"),
        (["attack", "extraction", "--model", "cnn", "--recipe", "digits-cnn"], "exactly one of --model"),
        (["attack", "membership", "--model", "cnn", "--references", "3"], "--references must be even"),
        (["attack", "membership", "--model", "cnn", "--attack", "rmia", "--references", "2"], "--references 4"),
        (["attack", "membership", "--model", "cnn", "--fpr", "0.01,1.5"], "strictly between 0 and 1"),
        (["attack", "membership", "--model", "mlp"], "attacks a digits model"),
        (["attack", "inversion", "--model", "cnn", "--classes", "0,12", "--steps", "1"], "distinct class indices"),
        (["attack", "inversion", "--model", "cnn", "--column", "worst area"], "--column is for --data breast-cancer"),
        (["attack", "attribute", "--column", "no such column"], "unknown column 'no such column'"),
        (["attack", "attribute", "--column", "worst-area", "--model", "cnn"], "needs an MLP with 30 inputs"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    args: list[str],
    message: str,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = in_process(args, model_dir, monkeypatch, capsys)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "rror:" in line]) == 1


def test_a_bad_argument_in_a_real_process_is_one_line_without_traceback(model_dir: Path) -> None:
    result = modelward(
        "attack", "extraction", "--model", "cnn", "--harden", "label-only", "--output", "scores", cwd=model_dir
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: score-based extraction needs capability scores; this classifier offers labels"
    ]
