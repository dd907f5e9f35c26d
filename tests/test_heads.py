import numpy as np
import pytest
import torch

from core.config import HeadConfig
from core.errors import InvalidInputError
from core.find.heads import LinearHead, train_head, weighted_loss


def blobs(n=60, d=5, c=3, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (c, d))
    y = np.repeat(np.arange(c), n // c)
    X = centers[y] + rng.normal(0, 1, (len(y), d)) + shift
    return X.astype(np.float32), y


def test_weighted_loss_matches_hand_computation():
    lo = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    le = torch.tensor([[0.5, 0.5]])
    yo, ye = torch.tensor([0, 1]), torch.tensor([1])

    def ce(logits, y):
        return float(np.mean([-np.log(np.exp(r[t]) / np.exp(r).sum()) for r, t in zip(logits.numpy(), y.numpy())]))

    expect = ce(lo, yo) + 0.3 * ce(le, ye)
    assert abs(float(weighted_loss(lo, yo, le, ye, lam=0.3)) - expect) < 1e-6
    assert abs(float(weighted_loss(lo, yo, le, ye, lam=0.0)) - ce(lo, yo)) < 1e-6


def test_sgd_head_learns_and_paper_defaults():
    cfg = HeadConfig()
    assert (cfg.lr, cfg.epochs, cfg.momentum, cfg.weight_decay) == (0.2, 1000, 0.9, 5e-4)
    X, y = blobs()
    head = train_head(X, y, ["a", "b", "c"], HeadConfig(epochs=200))
    assert head.accuracy(X, y) > 0.9


def test_lambda_zero_reproduces_undebugged_head():
    X, y = blobs()
    Xe, ye = blobs(seed=1, shift=5.0)
    cfg = HeadConfig(epochs=100)
    base = train_head(X, y, list("abc"), cfg)
    zero = train_head(X, y, list("abc"), cfg, X_extra=Xe, y_extra=ye, lam=0.0)
    torch.testing.assert_close(base.weight, zero.weight)
    some = train_head(X, y, list("abc"), cfg, X_extra=Xe, y_extra=ye, lam=0.5)
    assert not torch.allclose(base.weight, some.weight)


def test_lbfgs_reaches_the_sgd_optimum():
    X, y = blobs(n=150, d=8, c=3)
    Xe, ye = blobs(n=30, d=8, c=3, seed=2, shift=2.0)
    sgd = train_head(X, y, list("abc"), HeadConfig(), X_extra=Xe, y_extra=ye, lam=0.5)
    lb = train_head(X, y, list("abc"), HeadConfig(solver="lbfgs"), X_extra=Xe, y_extra=ye, lam=0.5)
    Xt, yt = blobs(n=300, d=8, c=3, seed=0)
    assert abs(sgd.accuracy(Xt, yt) - lb.accuracy(Xt, yt)) <= 0.01
    assert lb.meta["final_loss"] <= sgd.meta["final_loss"] + 1e-3


def test_bad_inputs_are_clear_errors():
    X, y = blobs()
    with pytest.raises(InvalidInputError, match="λ"):
        train_head(X, y, list("abc"), lam=1.5)
    with pytest.raises(InvalidInputError, match="labels"):
        train_head(X, y + 5, list("abc"))
    with pytest.raises(InvalidInputError, match="empty"):
        train_head(X[:0], y[:0], list("abc"))
    with pytest.raises(InvalidInputError, match="solver"):
        train_head(X, y, list("abc"), HeadConfig(solver="adam"))


def test_head_round_trips_with_metadata(tmp_path):
    X, y = blobs()
    head = train_head(X, y, ["a", "b", "c"], HeadConfig(epochs=20), meta={"backbone": "x", "feature_key": "k"})
    p = head.save(tmp_path / "h.safetensors")
    back = LinearHead.load(p)
    assert back.classes == ["a", "b", "c"] and back.meta["backbone"] == "x"
    assert back.meta["config"]["lr"] == 0.2
    np.testing.assert_array_equal(back.predict(X), head.predict(X))


def test_fused_solver_takes_the_same_steps_as_torch_sgd():
    X, y = blobs(n=150, d=8, c=3)
    Xe, ye = blobs(n=30, d=8, c=3, seed=2, shift=2.0)
    for lam, extra in ((0.5, (Xe, ye)), (0.0, (None, None))):
        ref = train_head(X, y, list("abc"), HeadConfig(epochs=300), X_extra=extra[0], y_extra=extra[1], lam=lam)
        fused = train_head(
            X, y, list("abc"), HeadConfig(epochs=300, solver="fused"), X_extra=extra[0], y_extra=extra[1], lam=lam
        )
        torch.testing.assert_close(fused.weight, ref.weight, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fused.bias, ref.bias, atol=1e-4, rtol=1e-4)
        assert abs(fused.meta["final_loss"] - ref.meta["final_loss"]) < 1e-5
