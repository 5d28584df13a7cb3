"""The trainer's settings: a device it cannot use is refused at start-up, naming the variable."""

from __future__ import annotations

import pytest

from ctrops_common.settings import load_settings
from ctrops_trainer.settings import TrainerSettings


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_accepts_auto_cpu_and_cuda(monkeypatch, value):
    monkeypatch.setenv("CTROPS_TRAINER_DEVICE", value)
    assert load_settings(TrainerSettings).trainer_device == value


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "CUDA", ""])
def test_device_rejects_anything_else_naming_the_variable(monkeypatch, capsys, value):
    monkeypatch.setenv("CTROPS_TRAINER_DEVICE", value)
    with pytest.raises(SystemExit) as stop:
        load_settings(TrainerSettings)
    assert stop.value.code == 2
    assert "CTROPS_TRAINER_DEVICE" in capsys.readouterr().err
