"""The examples in examples/ run, and do what they say: the Engine inside
scipy.optimize.minimize, inside a hand-written training loop (with sharded raw sums), and as
a PyTorch autograd.Function (skipped without torch)."""
import os
import runpy

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def _main(name):
    return runpy.run_path(os.path.join(EXAMPLES, name), run_name="example")["main"]


def test_engine_inside_scipy_minimize():
    res = _main("engine_scipy_minimize.py")(max_iter=60, verbose=False)
    assert res["grad_error"] < 1e-4
    assert res["loss"] < 0.05 * res["first_loss"]
    assert res["accuracy"] > 0.97


def test_engine_inside_a_hand_written_training_loop():
    res = _main("engine_training_loop.py")(epochs=15, verbose=False)
    assert res["curve"][-1] < 0.2 * res["curve"][0]
    assert res["combined_loss"] == pytest.approx(res["loss"], rel=1e-12)
    np.testing.assert_allclose(res["combined_grads"], res["grads"], rtol=1e-10, atol=1e-14)


def test_engine_as_a_pytorch_autograd_function():
    pytest.importorskip("torch", reason="torch is not installed (the PyTorch example needs it)")
    res = _main("engine_torch_autograd.py")(steps=100, verbose=False)
    assert res["gradcheck"] is True
    assert res["losses"][-1] < 0.3 * res["losses"][0]
    # the input gradient reached the torch layer in front of fastmlp
    assert res["linear_grad"] is not None and float(res["linear_grad"].abs().sum()) > 0
