import pytest

from overtrain.training.loop import learning_rate, warmup_steps_for, wsd_decay_start


def curve(total, schedule, warmup=100, peak=1.0):
    w = warmup_steps_for(total, warmup)
    return w, [learning_rate(s, total, peak, schedule, w, decay_fraction=0.2) for s in range(total)]


@pytest.mark.parametrize("total", [5, 10, 61, 122, 1953])
def test_wsd_warmup_stable_decay(total):
    w, lr = curve(total, "wsd")
    assert w == max(1, min(100, total // 10))
    decay = wsd_decay_start(total, 0.2)
    assert decay >= w  # the decay never starts inside the warmup, even for short budgets
    assert all(b >= a for a, b in zip(lr[:w], lr[1:w]))  # rising warmup
    assert lr[w - 1] == pytest.approx(1.0)
    assert all(x == pytest.approx(1.0) for x in lr[w:decay])  # stable
    assert all(b < a for a, b in zip(lr[decay:], lr[decay + 1 :]))  # strictly decaying
    assert lr[-1] < 1.0 / max(1, (total - decay)) + 1e-9  # ends near zero


def test_short_budget_warmup_is_ten_percent():
    assert warmup_steps_for(61, 100) == 6
    assert warmup_steps_for(3, 100) == 1
    assert warmup_steps_for(5000, 100) == 100


def test_cosine_and_constant():
    w, lr = curve(200, "cosine", warmup=10)
    assert w == 10 and lr[9] == pytest.approx(1.0)
    assert lr[-1] < 0.01 and all(b <= a for a, b in zip(lr[10:], lr[11:]))
    mid = 10 + (200 - 10) // 2
    assert lr[mid] == pytest.approx(0.5, abs=0.01)
    _, flat = curve(50, "constant", warmup=5)
    assert all(x == 1.0 for x in flat[5:])


def test_unknown_schedule():
    with pytest.raises(ValueError, match="allowed"):
        learning_rate(50, 100, 1.0, "linear", 5)
