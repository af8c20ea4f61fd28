"""Row blocks (fastmlp._blocks): a thread's rows run as several smaller products where the
BLAS's small-matrix path makes them faster.  Nothing here times anything: the calibration's
clock is replaced, and the blocks' effect is checked through the numbers they give."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _blocks
from fastmlp._threads import max_threads


@pytest.fixture(autouse=True)
def _fresh_decisions(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMLP_PLAN_CACHE", str(tmp_path / "plans"))
    _blocks.clear()
    yield
    _blocks.clear()


def test_block_rows_keep_every_product_within_the_small_matrix_limit():
    # every product of a step for r rows has M * N * K = r * n_l * n_{l+1}
    assert _blocks.block_rows([100, 100, 10]) == 100
    assert _blocks.block_rows([64, 100, 10]) == 156
    assert _blocks.block_rows([10, 300, 300, 2]) == 0  # 1e6 / 90000 = 11 rows < MIN_ROWS
    assert _blocks.block_rows([784, 512, 512, 10]) == 0


def test_row_blocks_follow_the_calibration(monkeypatch):
    calls = []

    def per_row(sizes, rows, blocks, dtype):
        calls.append((tuple(sizes), rows, blocks))
        return 1.0, speed_up[0]

    monkeypatch.setattr(_blocks, "_per_row_seconds", per_row)
    speed_up = [1.5]
    assert _blocks.row_blocks([100, 100, 10], 250, np.float64) == 3  # blocks of <= 100 rows
    assert _blocks.row_blocks([100, 100, 10], 250, np.float64) == 3  # kept: no second call
    assert calls == [((100, 100, 10), 250, 3)]
    speed_up[0] = 1.1  # below GAIN: one block
    assert _blocks.row_blocks([100, 100, 10], 250, np.float32) == 1
    # no calibration where blocks cannot help: rows within the limit, or too thin blocks
    assert _blocks.row_blocks([100, 100, 10], 100, np.float64) == 1
    assert _blocks.row_blocks([784, 512, 10], 4096, np.float64) == 1
    assert len(calls) == 2


def test_decisions_are_kept_on_disk_and_checked_when_read(monkeypatch, tmp_path):
    monkeypatch.setattr(_blocks._contention, "worth_saving", lambda contention=None: True)
    monkeypatch.setattr(_blocks, "_per_row_seconds", lambda *a: (1.0, 2.0))
    assert _blocks.row_blocks([100, 100, 10], 200, np.float64) == 2
    files = list((tmp_path / "plans").glob("blocks-*.json"))
    assert len(files) == 1
    _blocks.clear()

    def no_calibration(*a):
        raise AssertionError("calibrated again")
    monkeypatch.setattr(_blocks, "_per_row_seconds", no_calibration)
    assert _blocks.row_blocks([100, 100, 10], 200, np.float64) == 2  # read back
    # an untrusted file: a count the shape cannot have, or not a count, is recalibrated
    original = files[0].read_text()
    monkeypatch.setattr(_blocks, "_per_row_seconds", lambda *a: (1.0, 1.0))
    for bad in ('"blocks": 7', '"blocks": "2"', '"blocks": true', '"blocks": 2.0'):
        files[0].write_text(original.replace('"blocks": 2', bad))
        _blocks.clear()
        assert _blocks.row_blocks([100, 100, 10], 200, np.float64) == 1, bad
    # a calibration on a busy machine is kept for the process only
    files[0].unlink()
    _blocks.clear()
    monkeypatch.setattr(_blocks._contention, "worth_saving", lambda contention=None: False)
    assert _blocks.row_blocks([100, 100, 10], 200, np.float64) == 1
    assert not list((tmp_path / "plans").glob("blocks-*.json"))


def test_the_real_calibration_gives_a_block_count():
    k = _blocks.row_blocks([100, 100, 10], 200, np.float64)
    assert k in (1, 2)


def _data(n=300, n_in=30):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, n_in))
    Y = np.eye(3)[rng.integers(0, 3, n)]
    w = rng.random(n) + 0.5
    return X, Y, w


def _fit(monkeypatch, strategy, n_threads, blocks, **kw):
    monkeypatch.setenv("FASTMLP_STRATEGY", strategy)
    monkeypatch.setattr(_blocks, "row_blocks", lambda sizes, rows, dtype: blocks)
    X, Y, w = _data()
    m = fastmlp.MLP([30, 40, 3], activation="relu", out_activation="softmax", loss="log_loss",
                    dtype="float64", n_threads=n_threads, random_state=0, **kw)
    m.fit(X, Y, epochs=3, batch_size=64, optimizer="adam", learning_rate=0.01,
          sample_weight=w)
    return m


@pytest.mark.skipif(max_threads() < 2, reason="the split way needs two threads")
@pytest.mark.parametrize("dropout", [None, 0.3])
def test_blocks_on_one_thread_sum_as_the_split_ways_threads(monkeypatch, dropout):
    # blas on one thread in 2 row blocks adds the same two blocks' sums in the same order as
    # the split way's 2 threads: the same numbers, bit for bit (dropout masks follow the rows'
    # places in the batch, whichever block runs them)
    one = _fit(monkeypatch, "blas", 1, 2, dropout=dropout)
    assert one.workspace_.plan.label == "blas/1"
    assert one.workspace_.thread_grads.shape[0] >= 1  # the scratch of the second block
    assert one.workspace_.row_blocks == 2
    split = _fit(monkeypatch, "split", 2, 1, dropout=dropout)
    assert split.workspace_.plan.label == "split/2"
    for a, b in zip(one.coefs_ + one.intercepts_, split.coefs_ + split.intercepts_):
        np.testing.assert_array_equal(a, b)
    # and one block gives the same fit up to rounding
    whole = _fit(monkeypatch, "blas", 1, 1, dropout=dropout)
    for a, b in zip(one.coefs_, whole.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(max_threads() < 2, reason="needs two threads to choose from")
@pytest.mark.parametrize("blocks, threads", [(2, 1), (1, 2)])
def test_small_fits_stay_on_one_thread_where_blocks_pay(monkeypatch, blocks, threads):
    # a fit of milliseconds on one thread where row blocks make that faster, so that
    # OpenBLAS's threads are not woken (they spin afterwards, taking the cores)
    monkeypatch.delenv("FASTMLP_STRATEGY", raising=False)
    monkeypatch.setattr(_blocks, "row_blocks", lambda sizes, rows, dtype: blocks)
    X, Y, _ = _data()
    m = fastmlp.MLP([30, 40, 3], dtype="float64", n_threads=2, random_state=0)
    m.fit(X, Y, epochs=1, batch_size=64)
    assert m.workspace_.plan.source == "small"
    assert m.workspace_.plan.threads == threads


@pytest.mark.skipif(max_threads() < 2, reason="the split way needs two threads")
def test_the_split_ways_threads_run_their_rows_in_blocks(monkeypatch):
    # each thread runs its rows as 2 blocks through its own scratch sums: the same fit as one
    # block a thread, up to rounding
    two = _fit(monkeypatch, "split", 2, 2, dropout=0.2)
    assert two.workspace_.plan.label == "split/2"
    assert two.workspace_.thread_grads.shape[0] >= 3  # thread 1's sums, a scratch per thread
    one = _fit(monkeypatch, "split", 2, 1, dropout=0.2)
    for a, b in zip(two.coefs_ + two.intercepts_, one.coefs_ + one.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_the_file_key_does_not_depend_on_the_order_the_blas_libraries_loaded(monkeypatch):
    # NumPy's and SciPy's OpenBLAS load in either order: two processes on one machine wrote
    # two files for one decision
    key = ((100, 100, 10), 200, "<f8")
    monkeypatch.setattr(_blocks, "blas_versions", lambda: ["0.3.30", "0.3.31"])
    first = _blocks._file_key(key)
    monkeypatch.setattr(_blocks, "blas_versions", lambda: ["0.3.31", "0.3.30"])
    assert _blocks._file_key(key) == first


def test_the_benchmark_report_names_the_row_blocks(monkeypatch):
    from benchmarks import workers
    m = _fit(monkeypatch, "blas", 1, 2)
    assert workers._fastmlp_plan(m)["label"] == "blas/1, 2 row blocks a thread"
    m = _fit(monkeypatch, "blas", 1, 1)
    assert workers._fastmlp_plan(m)["label"] == "blas/1"
