"""The learning-rate schedules, by hand."""
import math

import pytest
import torch

from pipeline.training.params import TrainParams
from pipeline.training.optim import lr_factor, make_optimizer, make_scheduler


def test_step_schedule_divides_by_ten_every_k_epochs():
    p = TrainParams(epochs=8, lr_schedule="step", lr_step_epochs=3)
    # 5 steps per epoch: steps 0-14 at 1, 15-29 at 0.1, 30-39 at 0.01
    assert [lr_factor(s, p, 5) for s in (0, 14, 15, 29, 30, 39)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(39, TrainParams(lr_schedule="step", lr_step_epochs=0), 5) == 1.0


def test_cosine_schedule_with_warmup():
    p = TrainParams(epochs=4, lr_schedule="cosine", warmup_epochs=1)
    # 10 steps per epoch: a 10-step ramp, then half a cosine over the 30 steps left
    assert [lr_factor(s, p, 10) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, p, 10) == pytest.approx(1.0)
    assert lr_factor(25, p, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert lr_factor(39, p, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert lr_factor(5, TrainParams(lr_schedule="constant"), 10) == 1.0


def test_scheduler_sets_the_optimiser_rate_per_step():
    p = TrainParams(epochs=2, lr=0.01, lr_schedule="step", lr_step_epochs=1, optimizer="adamw", weight_decay=0.1)
    model = torch.nn.Linear(2, 1)
    opt = make_optimizer(model, p)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.1
    sched = make_scheduler(opt, p, steps_per_epoch=3)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.01] * 3 + [0.001] * 3)
