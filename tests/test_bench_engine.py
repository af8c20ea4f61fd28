"""The asv benchmarks of the backend's per-call cost (benchmarks/bench_engine.py) run, and the
allocation they track shows what the Engine is for: one steady-state call allocates a few
small Python objects, where the functional API allocates its outputs and packed copies."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # asv imports the suite as the package `benchmarks`
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_engine as suite  # noqa: E402


@pytest.mark.parametrize("shape", list(suite.SHAPES))
@pytest.mark.parametrize("api", suite.APIS)
def test_benchmarks_run(shape, api):
    timer = suite.TimeBackendCall()
    timer.setup(shape, api)
    timer.time_loss_and_grads(shape, api)
    timer.time_forward(shape, api)
    track = suite.TrackBackendAllocation()
    track.setup(shape, api)
    for name in ("track_alloc_loss_and_grads", "track_alloc_forward"):
        value = getattr(track, name)(shape, api)
        assert isinstance(value, float) and value > 0


def test_engine_calls_allocate_a_small_constant_the_functional_api_its_outputs():
    sizes, n = suite.SHAPES["large"]
    engine = suite.make_calls("large", "engine")
    functional = suite.make_calls("large", "functional")
    out_bytes = n * sizes[-1] * 8
    for eng_call, fun_call in zip(engine, functional):
        eng, fun = suite.peak_traced_bytes(eng_call), suite.peak_traced_bytes(fun_call)
        assert eng < 16_000
        assert fun > min(out_bytes, 64 * 256 * 8)  # the new output / gradient arrays
