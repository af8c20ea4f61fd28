"""Fixtures shared by several test files."""
import pytest


@pytest.fixture
def stop_after():
    """``stop_after(model, n)``: the model requests a stop after ``n`` more optimizer steps,
    as Ctrl-C does mid-epoch."""
    def arm(model, n_batches):
        t = model._trainer
        t.steps_per_call = 1  # one optimizer step per kernel call: a stop can land on any batch
        hook, calls = t._steps_done, [0]

        def counted(n_steps):
            hook(n_steps)
            calls[0] += n_steps
            if calls[0] == n_batches:
                model.request_stop()
        t._steps_done = counted
    return arm
