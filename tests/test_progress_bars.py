"""The command-line progress bars come from tqdm: make demo's training bar and ctrops-datagen's."""

from __future__ import annotations

from pathlib import Path

from ctrops_common.testing import load_script

ROOT = Path(__file__).resolve().parents[1]


def _demo():
    return load_script(ROOT / "scripts" / "demo.py")


def test_demo_training_bar_piped_prints_one_tqdm_line_per_epoch(capsys):
    progress = _demo().Progress(4)
    progress.say("학습을 시작했습니다.")
    for epoch in (1, 2, 2, 4):  # a repeated epoch (reconnect replay) does not move the bar back
        progress.epoch({"epoch": epoch, "total_epochs": 4, "metrics": {"val_loss": 0.1, "auc": 0.61, "ap": None}})
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "  학습을 시작했습니다."
    assert [line.split(" epochs")[0].split()[-1] for line in lines[1:]] == ["1/4", "2/4", "2/4", "4/4"]
    assert all("val loss 0.1000  val AUC 0.610  AP n/a" in line for line in lines[1:])
    assert "█" in lines[-1] and "\r" not in "".join(lines)  # tqdm's bar, no in-place redraws in a pipe


def test_datagen_reports_progress_per_chunk(tmp_path):
    from ctrops_common.datagen import CHUNK_ROWS, generate

    calls: list[tuple[int, int]] = []
    generate(tmp_path / "sample.csv", CHUNK_ROWS + 10, progress=lambda rows, size: calls.append((rows, size)))
    assert [rows for rows, _ in calls] == [CHUNK_ROWS, CHUNK_ROWS + 10]
    assert calls[-1][1] == (tmp_path / "sample.csv").stat().st_size
