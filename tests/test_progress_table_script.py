"""benchmarks/progress_table.py: a pretraining run's evaluated checkpoints as rows of clips, CPU, figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "progress_table.py"


@pytest.fixture(scope="module")
def pt():
    spec = importlib.util.spec_from_file_location("progress_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval(fd: float) -> dict[str, float]:
    keys = ["tonality_fake", "tonality_real", "bark_err_mean_db", "bark_err_max_db", "onset_contrast_fake"]
    keys += ["onset_contrast_real", "valley_db_fake", "valley_db_real", "partial_spread_fake"]
    return {"eval/fd": fd, **{f"eval/{k}": 0.5 for k in keys}, "eval/partial_spread_real": 0.5}


def test_rows_pair_each_evaluation_with_its_step_clips_and_cpu(pt, tmp_path):
    run = tmp_path / "run"
    (run / "pretrain").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"pretrain": {"batch_size": 8}}))
    lines = [{"step": s, "loss": 1.0, "cpu_seconds": 2.0 * s} for s in range(1, 5)]
    lines.insert(2, {"step": 2, **_eval(50.0)})
    lines.append({"step": 4, **_eval(40.0)})
    lines.append({"step": 4, **_eval(30.0)})  # a resumed run evaluated step 4 again: the last one counts
    text = "\n".join(json.dumps(x) for x in lines) + "\n{broken"
    (run / "pretrain" / "metrics.jsonl").write_text(text)
    rows = pt.rows(run)
    assert [(r["step"], r["clips"], r["cpu_seconds"], r["fd"]) for r in rows] == [
        (2, 16, 4.0, 50.0),
        (4, 32, 8.0, 30.0),
    ]
    table = pt.table(rows, every=4)
    assert "| 4 | 32 | 8 | 30.0 |" in table and "| 2 |" not in table
