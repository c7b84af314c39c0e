import pytest
import torch

from src.tasks import schedulers


def _opt():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_cosine_warms_up_then_decays_to_min():
    opt = _opt()
    sched = schedulers.cosine(opt, total_steps=100, warmup=0.1, min_lr_ratio=0.1)["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("factory,kwargs,interval", [
    (schedulers.step, {"step_size": 2}, "epoch"),
    (schedulers.one_cycle, {}, "step"),
    (schedulers.plateau, {"monitor": "val/acc", "mode": "max"}, "epoch"),
])
def test_each_schedule_builds(factory, kwargs, interval):
    out = factory(_opt(), total_steps=50, **kwargs)
    assert out["interval"] == interval
    assert hasattr(out["scheduler"], "step")
