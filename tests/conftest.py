"""Fixtures shared by several test files."""
import pytest


@pytest.fixture
def stop_after():
    """``stop_after(model, n)``: the model requests a stop after ``n`` more optimizer steps,
    as Ctrl-C does mid-epoch."""
    def arm(model, n_batches):
        opt = model._optimizer
        update, calls = opt.update, [0]

        def counted(*args):
            update(*args)
            calls[0] += 1
            if calls[0] == n_batches:
                model.request_stop()
        opt.update = counted
    return arm
