"""The command line.  End-to-end runs go through a subprocess (exit codes, stderr,
files left behind, signals); the many bad-input cases call ``cli.main`` in-process, which
checks the same contract (exit code, one ``fastmlp: error:`` line, no file written) without
paying an interpreter start each."""
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from fastmlp import cli

pd = pytest.importorskip("pandas")


def _params(m):
    return np.concatenate([a.ravel() for a in m.coefs_ + m.intercepts_])


def run(*args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastmlp.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def call(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, err, *needles):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rs = np.random.RandomState(0)
    X = rs.randn(300, 4)
    labels = np.array(["north", "south", "west"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["kind"] = labels
    frame.to_csv(d / "cls.csv", index=False)
    frame.to_parquet(d / "cls.parquet")
    reg = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    reg["y"] = X @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rs.randn(300)
    reg.to_csv(d / "reg.tsv", sep="\t", index=False)
    np.save(d / "reg.npy", reg.to_numpy())
    np.savez(d / "cls.npz", X=X, y=(X[:, 0] > 0).astype(int))
    big = rs.randn(20000, 10)
    np.savez(d / "big.npz", X=big, y=(big[:, :2].sum(1) > 0).astype(int))
    (d / "text.csv").write_text("a,b,y\n1,2,0\n3,abc,1\n4,5,0\n")
    (d / "missing.csv").write_text("a,b,y\n1,2,0\n3,,1\n")
    (d / "inf.csv").write_text("a,b,y\n1,2,0\n3,inf,1\n")
    (d / "header.csv").write_text("a,b,y\n")
    (d / "empty.csv").write_text("")
    (d / "one.csv").write_text("a,b,y\n1,2,0\n3,4,0\n5,6,0\n")
    (d / "notes.txt").write_text("hello\n")
    (d / "junk.parquet").write_bytes(b"not parquet at all")
    return d


# -- end to end, in subprocesses ------------------------------------------------------------
def test_main_job_without_arguments(tmp_path):
    r = run(cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "held-out accuracy: 0.9" in r.stdout  # the main job's network learns digits
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, value", [("NUMBA_NUM_THREADS", "0"),
                                         ("NUMBA_NUM_THREADS", "-2"),
                                         ("NUMBA_THREADING_LAYER", "bogus"),
                                         ("FASTMLP_STRATEGY", "fastest"),
                                         ("LOKY_MAX_CPU_COUNT", "1.5")])
def test_a_bad_thread_variable_is_one_line_exit_2(tmp_path, data, name, value):
    """A thread setting fastmlp cannot run with: one line naming the variable, exit 2, nothing
    written; each was a traceback (from inside Numba: NUMBA_NUM_THREADS=0 failed ``import
    fastmlp`` itself; from joblib's cpu_count for LOKY_MAX_CPU_COUNT)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "FASTMLP_STRATEGY",
                        "LOKY_MAX_CPU_COUNT")}
    env[name] = value
    model = tmp_path / "m.npz"
    r = subprocess.run([sys.executable, "-m", "fastmlp.cli", "train", str(data / "cls.csv"),
                        "--target", "kind", "--epochs", "2", "--out", str(model)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error:"), r.stderr
    assert f"{name}={value!r}" in lines[0] or f"got {value!r}" in lines[0], lines[0]
    assert not model.exists()


def test_a_warning_is_one_line(tmp_path, capsys, monkeypatch):
    """A library warning during a command is one ``fastmlp: warning:`` line: a model file's
    n_threads above this machine's cores printed Python's two-line format, with the path and
    source line of fastmlp's code.  The caller's way of showing warnings comes back after."""
    from fastmlp import _threads
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = fastmlp.MLP([3, 4, 2], n_threads=7, random_state=0).fit(X, X[:, :2], epochs=1)
    m.save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", X)
    monkeypatch.setattr(_threads, "cpu_budget", lambda: 2)
    monkeypatch.setattr(_threads, "_warned", set())
    shown = warnings.showwarning
    rc, out, err = call(capsys, "predict", tmp_path / "m.npz", tmp_path / "x.npy")
    assert rc == 0, err
    assert err.splitlines() == ["fastmlp: warning: n_threads=7 is more than the 2 CPU cores "
                                "this process may use (its CPU affinity, container quota or "
                                "Dask worker threads): using 2"]
    assert warnings.showwarning is shown


def test_digits_model_takes_raw_pixels(tmp_path, capsys):
    """The main job's standardisation is stored with its model: evaluate takes raw digits."""
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "raw.npy", np.column_stack([X, y]))
    rc, out, err = call(capsys, "train", "--quiet", "--out", tmp_path / "d.npz")
    assert rc == 0, err
    rc, out, err = call(capsys, "evaluate", tmp_path / "d.npz", tmp_path / "raw.npy")
    assert rc == 0, err
    assert float(out.split("accuracy:")[1].split()[0]) > 0.95


def test_train_predict_evaluate_info(tmp_path, data):
    model, plot = tmp_path / "m.npz", tmp_path / "loss.png"
    r = run("train", data / "cls.csv", "--target", "kind", "--hidden", "16,8", "--epochs", 40,
            "--lr", 0.01, "--out", model, "--plot", plot, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # one JSON object and nothing else on stdout
    assert report["task"] == "classify" and report["metric"] == "accuracy"
    assert report["architecture"] == [4, 16, 8, 3] and report["epochs"] == 40
    assert report["held_out"] > 0.7 and report["n_held_out"] == 60
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "epoch 40/40" in r.stderr  # plain progress lines when stderr is not a terminal

    preds = tmp_path / "pred.csv"
    r = run("predict", model, data / "cls.parquet", "--out", preds, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = pd.read_csv(preds)["prediction"]
    m = fastmlp.load(model)
    X = pd.read_csv(data / "cls.csv")[["a", "b", "c", "d"]].to_numpy(np.float64)
    X = ((X - m.x_mean_) / m.x_scale_).astype(np.float32)  # the stored standardisation
    assert not hasattr(m, "y_mean_")  # a classifier: only the features are scaled
    assert list(got) == list(m.classes_[m.predict(X).argmax(1)])
    assert set(got) <= {"north", "south", "west"}

    r = run("info", model, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4-16-8-3" in r.stdout and "north" in r.stdout and "40 epochs" in r.stdout


def test_interrupt_then_resume_equals_an_uninterrupted_run(tmp_path, data):
    opts = ["--dtype", "float64", "--solver", "adam", "--hidden", "16", "--batch-size", "8",
            "--epochs", "6", "--quiet"]
    ref = tmp_path / "ref.npz"
    assert cli.main(["train", str(data / "big.npz"), *opts, "--out", str(ref)]) == 0

    ckpt = tmp_path / "ckpt.npz"
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp.cli", "train",
                             str(data / "big.npz"), *opts, "--out", str(ckpt),
                             "--checkpoint-every", "1"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # somewhere in epochs 2..6, usually mid-epoch
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    print(err)  # where it stopped: "during epoch k (row r of n)" or "after epoch k"
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "fastmlp: interrupted by SIGINT" in err
    assert "--resume" in err and "Traceback" not in err
    first = fastmlp.load(ckpt)
    assert len(first.loss_curve_) < 6

    # resume (SIGTERM this one as soon as it runs: exit 143, saved again), then finish
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp.cli", "train", "--resume",
                             str(ckpt), "--checkpoint-every", "1", "--quiet"], cwd=tmp_path,
                            text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mtime = ckpt.stat().st_mtime_ns
    while ckpt.stat().st_mtime_ns == mtime and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    print(err)
    assert proc.returncode in (0, 143), err
    if proc.returncode == 143:
        assert "interrupted by SIGTERM" in err
        assert cli.main(["train", "--resume", str(ckpt), "--quiet"]) == 0

    a, b = fastmlp.load(ref), fastmlp.load(ckpt)
    assert np.array_equal(_params(a), _params(b))  # to the bit, in float64
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)


# -- in-process runs -----------------------------------------------------------------------
def test_regression_formats_and_evaluate(tmp_path, data, capsys):
    model = tmp_path / "r.npz"
    rc, out, err = call(capsys, "train", data / "reg.tsv", "--epochs", 60, "--lr", 0.01,
                        "--out", model, "--quiet")
    assert rc == 0, err
    assert "regress 4-100-1" in out and "held-out R^2" in out
    rc, out, err = call(capsys, "evaluate", model, data / "reg.tsv", "--json")
    assert rc == 0, err
    assert json.loads(out)["metric"] == "R^2" and json.loads(out)["score"] > 0.5
    rc, out, err = call(capsys, "predict", model, data / "reg.tsv", "--out", tmp_path / "p.npy")
    assert rc == 0 and np.load(tmp_path / "p.npy").shape == (300,)
    # .npy data: target in the last column
    rc, out, err = call(capsys, "train", data / "reg.npy", "--epochs", 5, "--quiet")
    assert rc == 0 and "regress 4-100-1" in out


def test_npz_lbfgs_and_proba(tmp_path, data, capsys):
    model = tmp_path / "l.npz"
    rc, out, err = call(capsys, "train", data / "cls.npz", "--solver", "lbfgs", "--epochs",
                        30, "--out", model)
    assert rc == 0, err
    assert "iterations" in out
    assert type(fastmlp.load(model)) is fastmlp.MLP  # one model class whatever the solver
    rc, out, err = call(capsys, "predict", model, data / "cls.npz", "--proba")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "proba_0,proba_1" and len(lines) == 301
    assert abs(sum(map(float, lines[1].split(","))) - 1) < 1e-9
    rc, out, err = call(capsys, "evaluate", model, data / "cls.npz")
    assert rc == 0 and out.startswith("accuracy: ")
    rc, out, err = call(capsys, "info", model)
    assert rc == 0 and "optimizer: lbfgs" in out and "30 L-BFGS iterations" not in out
    assert "L-BFGS iterations, loss " in out
    rc, out, err = call(capsys, "train", "--resume", model)
    assert_user_error(rc, err, "an L-BFGS run (--solver lbfgs) is one optimisation",
                      "cannot be resumed")


def test_cli_lbfgs_equals_the_python_mlp(tmp_path, data, capsys):
    """`fastmlp train --solver lbfgs` is MLP.fit(optimizer='lbfgs') on the job's rows: the
    same out_activation/loss as sgd/adam, float64, the class weights as sample weights."""
    from sklearn.utils.class_weight import compute_sample_weight
    with np.load(data / "cls.npz") as z:
        X, y = z["X"], z["y"]
    y = y.copy()
    y[:40] = 2  # three classes, unbalanced
    np.savez(tmp_path / "d.npz", X=X, y=y)
    rc, out, err = call(capsys, "train", tmp_path / "d.npz", "--solver", "lbfgs", "--epochs",
                        25, "--val-fraction", 0, "--no-scale", "--alpha", "0.001",
                        "--class-weight", "balanced", "--hidden", 6, "--out",
                        tmp_path / "m.npz", "--json")
    assert rc == 0, err
    report = json.loads(out)
    cli_model = fastmlp.load(tmp_path / "m.npz")
    python = fastmlp.MLP((4, 6, 3), activation="relu", out_activation="softmax",
                         loss="log_loss", dtype="float64", alpha=0.001, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        python.fit(X, np.eye(3)[y], optimizer="lbfgs", epochs=25,
                   sample_weight=compute_sample_weight("balanced", y))
    assert np.array_equal(_params(cli_model), _params(python))
    assert report["epochs"] == len(python.loss_curve_)
    assert report["final_loss"] == python.loss_curve_[-1]
    assert list(cli_model.classes_) == [0, 1, 2]


def test_estimator_files_are_still_read(tmp_path, data, capsys):
    """Files of the scikit-learn-style estimators (saved from Python, and `fastmlp train
    --solver lbfgs` before it trained an MLP) are read by predict, evaluate and info."""
    with np.load(data / "cls.npz") as z:
        X, y = z["X"], z["y"]
    est = fastmlp.MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=30,
                                random_state=0).fit(X, y)
    est.save(tmp_path / "e.npz")
    rc, out, err = call(capsys, "predict", tmp_path / "e.npz", data / "cls.npz", "--proba")
    assert rc == 0, err
    proba = np.loadtxt(io.StringIO(out), delimiter=",", skiprows=1)
    assert out.splitlines()[0] == "proba_0,proba_1"
    np.testing.assert_allclose(proba, est.predict_proba(X), rtol=1e-12)
    rc, out, err = call(capsys, "predict", tmp_path / "e.npz", data / "cls.npz")
    assert rc == 0 and np.array_equal(np.loadtxt(io.StringIO(out), skiprows=1), est.predict(X))
    rc, out, err = call(capsys, "evaluate", tmp_path / "e.npz", data / "cls.npz", "--json")
    assert rc == 0 and json.loads(out)["score"] == est.score(X, y)
    rc, out, err = call(capsys, "info", tmp_path / "e.npz")
    assert rc == 0 and f"training: {est.n_iter_} L-BFGS iterations" in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = fastmlp.MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
        reg.fit(X, y)
    reg.save(tmp_path / "r.npz")
    rc, out, err = call(capsys, "predict", tmp_path / "r.npz", data / "cls.npz", "--proba")
    assert_user_error(rc, err, "--proba needs a classifier; this model is a regressor")


BAD_TRAIN = [
    (["nope.csv"], "no such file"),
    (["notes.txt"], "unknown data format"),
    (["junk.parquet"], "cannot read PARQUET"),
    (["text.csv"], "column 'b', row 2 (line 3): non-numeric value 'abc'"),
    (["missing.csv"], "column 'b', row 2 (line 3): missing value"),
    (["inf.csv"], "column 'b', row 2 (line 3): infinite value"),
    (["header.csv"], "no rows"),
    (["empty.csv"], "empty"),
    (["one.csv"], "single class"),
    (["cls.csv", "--target", "colour"], "no column 'colour'"),
    (["cls.csv", "--task", "regress"], "not numeric"),
    (["cls.csv", "--epochs", "0"], "--epochs"),
    (["cls.csv", "--lr", "nan"], "--lr"),
    (["cls.csv", "--hidden", "8,-1"], "--hidden"),
    (["cls.csv", "--val-fraction", "1.5"], "--val-fraction"),
    (["cls.csv", "--batch-size", "x"], "--batch-size"),
    (["cls.csv", "--solver", "newton"], "--solver"),
    (["cls.csv", "--plot", "curve.jpg"], "PNG"),
    (["cls.csv", "--solver", "lbfgs", "--checkpoint-every", "2"], "sgd or adam"),
    (["cls.csv", "--checkpoint-every", "2"], "needs --out"),
    (["cls.csv", "--out", "no/such/dir/m.npz"], "does not exist"),
    (["--resume", "absent.npz"], "no such file"),
    (["--no-scale"], "--no-scale needs DATA"),
    (["cls.csv", "--resume", "cls.csv"], "not a fastmlp model"),
]


@pytest.mark.parametrize("args,message", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_training_input_is_one_line_exit_2_and_writes_nothing(tmp_path, data, capsys,
                                                                  monkeypatch, args, message):
    monkeypatch.chdir(data)
    out_file = tmp_path / "model.npz"
    extra = [] if "--out" in args or message == "needs --out" else ["--out", str(out_file)]
    rc, out, err = call(capsys, "train", *args, *extra, "--quiet")
    assert_user_error(rc, err, message)
    assert not out_file.exists()


@pytest.fixture(scope="module")
def cls_model(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    assert cli.main(["train", str(data / "cls.csv"), "--epochs", "3", "--out", str(path),
                     "--quiet"]) == 0
    return path


def test_bad_predict_and_evaluate_input(tmp_path, data, cls_model, capsys):
    (tmp_path / "fewer.csv").write_text("a,b,c\n1,2,3\n")
    cases = [
        (["predict", cls_model, data / "reg.npy"], "5 feature columns, but the model expects 4"),
        (["predict", cls_model, tmp_path / "fewer.csv"], "missing feature column(s) 'd'"),
        (["predict", data / "cls.csv", data / "cls.csv"], "not a fastmlp model"),
        (["predict", tmp_path / "none.npz", data / "cls.csv"], "no such file"),
        (["predict", cls_model, data / "cls.csv", "--out", tmp_path / "p.xlsx"],
         "unknown format"),
        (["evaluate", cls_model, data / "cls.csv", "--target", "nope"], "no column 'nope'"),
        (["info", data / "notes.txt"], "not a fastmlp model"),
        (["frobnicate"], "invalid choice"),
    ]
    for args, message in cases:
        rc, out, err = call(capsys, *args)
        assert_user_error(rc, err, message)
    assert sorted(os.listdir(tmp_path)) == ["fewer.csv"]


def test_failed_runs_leave_an_existing_model_intact(tmp_path, data, cls_model, capsys,
                                                    monkeypatch):
    model = tmp_path / "m.npz"
    model.write_bytes(cls_model.read_bytes())
    before = model.read_bytes()
    rc, out, err = call(capsys, "train", data / "text.csv", "--out", model, "--quiet")
    assert_user_error(rc, err, "non-numeric")
    # diverging training: a clear message, exit 1, and the file is left as it was
    rc, out, err = call(capsys, "train", data / "reg.tsv", "--solver", "sgd", "--lr", "1e4",
                        "--epochs", 50, "--out", model, "--quiet")
    assert rc == 1 and "training diverged at epoch" in err and "left as it was" in err
    assert model.read_bytes() == before
    # with checkpoints, the last good one stays: the loss turns NaN in epoch 4
    real = fastmlp.MLP.partial_fit

    def nan_in_epoch_4(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if len(self.loss_curve_) == 4:
            self.loss_curve_[-1] = float("nan")
        return self
    monkeypatch.setattr(fastmlp.MLP, "partial_fit", nan_in_epoch_4)
    rc, out, err = call(capsys, "train", data / "reg.tsv", "--solver", "sgd", "--epochs", 50,
                        "--out", model, "--checkpoint-every", 1, "--quiet")
    assert rc == 1 and "training diverged at epoch 4" in err
    assert "keeps the checkpoint of epoch 3" in err
    m = fastmlp.load(model)
    assert len(m.loss_curve_) == 3 and np.isfinite(_params(m)).all()
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temporary files left


def test_resume_keeps_settings_and_checks_data(tmp_path, data, cls_model, capsys):
    ckpt = tmp_path / "c.npz"
    ckpt.write_bytes(cls_model.read_bytes())
    rc, out, err = call(capsys, "train", "--resume", ckpt, "--hidden", "7", "--epochs", 5)
    assert_user_error(rc, err, "--hidden", "differs from the checkpoint")
    rc, out, err = call(capsys, "train", data / "cls.parquet", "--resume", ckpt, "--epochs", 5)
    assert rc == 0, err  # the same rows from another format
    rc, out, err = call(capsys, "train", data / "reg.tsv", "--resume", ckpt, "--epochs", 9)
    assert_user_error(rc, err)
    rc, out, err = call(capsys, "train", "--resume", ckpt, "--epochs", 5)
    assert_user_error(rc, err, "already trained for 5 epochs")
    assert len(fastmlp.load(ckpt).loss_curve_) == 5


# -- standardisation (features, and a regression target) -----------------------------------
DATA_DIR = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    """scikit-learn's diabetes table in its original units (ages, mg/dL, a target ~150 +- 77):
    what a person has, unscaled."""
    from sklearn.datasets import load_diabetes
    d = tmp_path_factory.mktemp("diabetes")
    frame = load_diabetes(scaled=False, as_frame=True).frame
    frame.to_csv(d / "all.csv", index=False)
    frame.iloc[:350].to_csv(d / "train.csv", index=False)
    frame.iloc[350:].to_csv(d / "test.csv", index=False)
    return d


def _train_json(capsys, *args):
    rc, out, err = call(capsys, "train", *args, "--quiet", "--json")
    assert rc == 0, err
    return json.loads(out)


def test_unscaled_regression_trains_well_by_default(tmp_path, diabetes, capsys):
    scaled = _train_json(capsys, diabetes / "all.csv", "--epochs", 30, "--seed", 2)
    assert scaled["scaled"] is True and scaled["held_out"] > 0.3
    raw = _train_json(capsys, diabetes / "all.csv", "--epochs", 30, "--seed", 2, "--no-scale")
    assert raw["scaled"] is False and raw["held_out"] < scaled["held_out"] - 0.15
    # on rows the training never saw, through `fastmlp evaluate` (which applies the scaling)
    model = tmp_path / "m.npz"
    _train_json(capsys, diabetes / "train.csv", "--epochs", 30, "--out", model)
    rc, out, err = call(capsys, "evaluate", model, diabetes / "test.csv", "--json")
    assert rc == 0, err
    assert json.loads(out)["score"] > 0.3


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_predict_and_evaluate_apply_the_stored_scaling(tmp_path, diabetes, capsys, solver):
    from sklearn.metrics import r2_score
    model = tmp_path / "m.npz"
    _train_json(capsys, diabetes / "train.csv", "--epochs", 20, "--solver", solver,
                "--out", model)
    m = fastmlp.load(model)
    frame = pd.read_csv(diabetes / "test.csv")
    X, y = frame.iloc[:, :-1].to_numpy(np.float64), frame["target"].to_numpy(np.float64)
    train = pd.read_csv(diabetes / "train.csv").iloc[:, :-1].to_numpy()
    # the scaling is of the training part only (after the 20% held out), population std
    assert m.x_mean_.shape == m.x_scale_.shape == (10,) and m.y_scale_.shape == (1,)
    assert np.allclose(m.x_mean_, train.mean(0), rtol=0.05)
    assert 60 < m.y_scale_[0] < 90 and 130 < m.y_mean_[0] < 170
    # by hand: standardise, predict, back to the target's units
    Xs = (X - m.x_mean_) / m.x_scale_
    out = m.predict(Xs.astype(m.dtype))  # an MLP whatever the solver
    # in the model's precision: float32 for adam (the default dtype), float64 for L-BFGS
    dtype = np.float64 if solver == "lbfgs" else np.float32
    expected = (out * m.y_scale_ + m.y_mean_)[:, 0].astype(dtype)
    assert 50 < expected.mean() < 250  # original units, not standardised ones

    rc, _, err = call(capsys, "predict", model, diabetes / "test.csv", "--out", tmp_path / "p.npy")
    assert rc == 0, err
    assert np.array_equal(np.load(tmp_path / "p.npy"), expected)
    rc, out, err = call(capsys, "predict", model, diabetes / "test.csv")
    assert rc == 0, err
    assert out.splitlines()[0] == "prediction"  # one column name whatever the solver
    printed = pd.read_csv(io.StringIO(out))["prediction"].to_numpy()
    assert np.array_equal(printed.astype(dtype), expected)  # digits enough to round-trip
    if solver != "lbfgs":  # and no more: float32 values printed with float32 digits
        assert max(len(line) for line in out.splitlines()[1:]) <= 12
    rc, out, err = call(capsys, "evaluate", model, diabetes / "test.csv", "--json")
    assert rc == 0, err
    assert json.loads(out)["score"] == pytest.approx(r2_score(y, expected), rel=1e-12)
    rc, out, err = call(capsys, "info", model)
    assert rc == 0 and "features standardised and target standardised" in out


def test_resume_reuses_the_stored_scaling_to_the_bit(tmp_path, data, capsys, monkeypatch):
    opts = ["--dtype", "float64", "--hidden", "8", "--batch-size", "16", "--quiet"]
    ref, ckpt = tmp_path / "ref.npz", tmp_path / "ckpt.npz"
    assert cli.main(["train", str(data / "reg.tsv"), *opts, "--epochs", "4",
                     "--out", str(ref)]) == 0
    assert cli.main(["train", str(data / "reg.tsv"), *opts, "--epochs", "2",
                     "--out", str(ckpt)]) == 0
    rc, out, err = call(capsys, "train", "--resume", ckpt, "--no-scale", "--epochs", 4)
    assert_user_error(rc, err, "--no-scale differs from the checkpoint")

    from fastmlp.cli import train as cli_train

    def no_refit(*a):
        raise AssertionError("a resumed run must reuse the checkpoint's scaling")
    monkeypatch.setattr(cli_train, "_fit_scaling", no_refit)
    rc, out, err = call(capsys, "train", data / "reg.tsv", "--resume", ckpt, "--epochs", 4)
    assert rc == 0, err
    a, b = fastmlp.load(ref), fastmlp.load(ckpt)
    assert np.array_equal(_params(a), _params(b))
    for k in ("x_mean_", "x_scale_", "y_mean_", "y_scale_"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k


def test_no_scale_reproduces_models_from_before_scaling(tmp_path, capsys):
    """tests/data/old_v1_model.npz was written by fastmlp before scaling existed (format 1)
    with `fastmlp train old_v1_data.npy --hidden 4 --epochs 3 --dtype float64 --batch-size 8
    --out old_v1_model.npz`."""
    from fastmlp.persistence import read_metadata
    old_data = os.path.join(DATA_DIR, "old_v1_data.npy")
    old = tmp_path / "old.npz"
    old.write_bytes(open(os.path.join(DATA_DIR, "old_v1_model.npz"), "rb").read())
    assert read_metadata(old)["format_version"] == 1
    m = fastmlp.load(old)
    assert getattr(m, "x_mean_", None) is None and getattr(m, "y_mean_", None) is None
    opts = ["--hidden", 4, "--dtype", "float64", "--batch-size", 8]
    new = tmp_path / "new.npz"
    rc, out, err = call(capsys, "train", old_data, *opts, "--epochs", 3, "--no-scale",
                        "--out", new, "--quiet")
    assert rc == 0, err
    n = fastmlp.load(new)
    assert np.array_equal(_params(n), _params(m))  # the old training, exactly
    assert n.loss_curve_ == m.loss_curve_
    assert read_metadata(new)["format_version"] == 1 and "scaling" not in read_metadata(new)
    # the old model predicts as before: raw inputs in, raw outputs out
    X = np.load(old_data)[:, :-1]
    np.save(tmp_path / "X.npy", X)  # at predict, every column of a .npy is a feature
    rc, out, err = call(capsys, "predict", old, tmp_path / "X.npy")
    assert rc == 0, err
    assert np.array_equal(pd.read_csv(io.StringIO(out))["prediction"].to_numpy(), m.predict(X)[:, 0])
    rc, out, err = call(capsys, "info", old)
    assert rc == 0 and "scaling: none" in out
    # and resumes unscaled (no flag needed), like a --no-scale run of the same length
    rc, out, err = call(capsys, "train", old_data, "--resume", old, "--epochs", 5, "--quiet")
    assert rc == 0, err
    rc, out, err = call(capsys, "train", old_data, *opts, "--epochs", 5, "--no-scale",
                        "--out", new, "--quiet")
    assert rc == 0, err
    assert np.array_equal(_params(fastmlp.load(old)), _params(fastmlp.load(new)))


# -- hostile input: every promise of the error contract ---------------------------------------
def _edit_model(src, dst, change):
    """A copy of model file src with change(meta) applied and its checksum recomputed (what
    anyone can do: the checksum is not a signature)."""
    import zipfile
    from fastmlp import persistence
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(np.load(io.BytesIO(members["__meta__.npy"])).tobytes())
    arrays = {n[:-4]: np.load(io.BytesIO(raw)) for n, raw in members.items()
              if n != "__meta__.npy"}
    change(meta, arrays)
    meta.pop("sha256", None)
    meta["arrays"] = {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()}
    meta["sha256"] = persistence._digest(arrays, meta)
    with zipfile.ZipFile(dst, "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        z.writestr("__meta__.npy", buf.getvalue())
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.save(buf, a)
            z.writestr(k + ".npy", buf.getvalue())
    return dst


EDITS = {
    "cli record not a dict": lambda meta, arrays: meta["extra"].update(cli=["x"]),
    "history not a dict": lambda meta, arrays: meta["extra"]["cli"].update(history=3),
    "string val_score": lambda meta, arrays: meta["extra"]["cli"]["history"].update(
        val_score=["0.9"] * 3),
    "missing created": lambda meta, arrays: meta.pop("created"),
    "classes too short": lambda meta, arrays: arrays.update(
        {"attr/classes_": np.array(["north", "south"])}),
    "classes 2-D": lambda meta, arrays: arrays.update(
        {"attr/classes_": np.array([["north", "south", "west"]] * 3)}),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_model_files_are_refused_in_one_line(tmp_path, data, cls_model, capsys, edit):
    model = _edit_model(cls_model, tmp_path / "m.npz", EDITS[edit])
    for command in (["info", model], ["predict", model, data / "cls.csv"],
                    ["evaluate", model, data / "cls.csv"]):
        rc, out, err = call(capsys, *command)
        assert_user_error(rc, err, str(model))
        assert out == ""


@pytest.mark.parametrize("edit,needle", [
    (lambda s: s.update(hidden=[7]), "do not match"),
    (lambda s: s.update(solver="lbfgs"), "solver lbfgs"),
    (lambda s: s.update(dtype="float64"), "dtype"),
    (lambda s: s.update(epochs="many"), "setting 'epochs'"),
    (lambda s: s.update(lr=-1), "setting 'lr'"),
])
def test_edited_settings_make_resume_refuse_clearly(tmp_path, data, cls_model, capsys, edit,
                                                     needle):
    model = _edit_model(cls_model, tmp_path / "m.npz",
                        lambda meta, arrays: edit(meta["extra"]["cli"]["settings"]))
    before = model.read_bytes()
    rc, out, err = call(capsys, "train", "--resume", model, "--epochs", 6, "--quiet")
    assert_user_error(rc, err, needle)
    assert model.read_bytes() == before


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    (d / "inf_target.csv").write_text("a,b,y\n1,2,0.5\n3,4,inf\n5,6,1.5\n7,8,2.5\n")
    (d / "inf_label.csv").write_text("a,b,c,d,kind\n1,2,3,4,1\n1,2,3,4,-inf\n")
    rows = "".join(f"{i},{i % 3},{i % 5},{i % 7},{'north' if i % 2 else 'south'}\n"
                   for i in range(40))
    (d / "huge32.csv").write_text("a,b,c,d,kind\n1,1e39,0,0,north\n" + rows)
    (d / "huge.csv").write_text("a,b,c,d,kind\n1,1e200,0,0,north\n" + rows)
    header = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, " \
             b"'shape': (100000, 100000), }"
    header += b" " * (128 - 10 - len(header) + 10 - 1) + b"\n"
    (d / "claims.npy").write_bytes(header[:10 + 118] + b"\0" * 80)
    with __import__("zipfile").ZipFile(d / "claims.npz", "w") as z:
        z.writestr("X.npy", (d / "claims.npy").read_bytes())
        z.writestr("y.npy", (d / "claims.npy").read_bytes())
    return d


def test_header_claims_are_checked_before_allocating(hostile):
    with open(hostile / "claims.npy", "rb") as f:  # the file is what the test means it to be
        assert np.lib.format.read_magic(f) == (1, 0)
        assert np.lib.format.read_array_header_1_0(f)[0] == (100000, 100000)
    assert os.path.getsize(hostile / "claims.npy") < 300


@pytest.mark.parametrize("args,message", [
    (["inf_target.csv", "--task", "regress"], "target column 'y', row 2 (line 3): infinite"),
    (["huge32.csv", "--no-scale"], "feature column 'b', row 1"),
    (["huge32.csv", "--no-scale"], "beyond float32's range"),
    (["huge.csv"], "column 'b', row 1 of the training rows: value 1e+200 is too large"),
    (["claims.npy"], "truncated or damaged"),
    (["claims.npz"], "truncated or damaged"),
    (["--hidden", "100000,100000"], "memory"),
])
def test_hostile_training_input_is_one_line(tmp_path, hostile, capsys, monkeypatch, args,
                                            message):
    monkeypatch.chdir(hostile)
    rc, out, err = call(capsys, "train", *args, "--out", tmp_path / "m.npz", "--quiet",
                        "--val-fraction", 0)
    assert_user_error(rc, err, message)
    assert os.listdir(tmp_path) == []


def test_hostile_predict_and_evaluate_input(tmp_path, data, hostile, cls_model, capsys):
    for command in ("predict", "evaluate"):
        rc, out, err = call(capsys, command, cls_model, hostile / "huge32.csv")
        assert_user_error(rc, err, "column 'b', row 1", "beyond float32's range")
    rc, out, err = call(capsys, "evaluate", cls_model, hostile / "inf_label.csv")
    assert_user_error(rc, err, "target column 'kind', row 2 (line 3): infinite value")
    rc, out, err = call(capsys, "predict", cls_model, hostile / "claims.npy")
    assert_user_error(rc, err, "truncated")


def test_float_beyond_float32_trains_in_float64(tmp_path, hostile, capsys):
    rc, out, err = call(capsys, "train", hostile / "huge32.csv", "--no-scale", "--dtype",
                        "float64", "--epochs", 1, "--quiet", "--val-fraction", 0)
    assert rc in (0, 1) and "Traceback" not in err  # trains, or says it diverged


# -- signals and threads ---------------------------------------------------------------------
def _signal_then(real, signum):
    def wrapper(*args, **kwargs):
        os.kill(os.getpid(), signum)
        return real(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_reading_exits_with_its_code(tmp_path, data, cls_model, capsys,
                                                     monkeypatch, signum, code):
    import zipfile
    monkeypatch.setattr(pd, "read_csv", _signal_then(pd.read_csv, signum))
    rc, out, err = call(capsys, "train", data / "cls.csv", "--out", tmp_path / "m.npz")
    assert rc == code and "cannot read" not in err and "Traceback" not in err, err
    monkeypatch.undo()
    # the model file's members are read through ZipFile.open (a bounded read)
    monkeypatch.setattr(zipfile.ZipFile, "open", _signal_then(zipfile.ZipFile.open, signum))
    rc, out, err = call(capsys, "predict", cls_model, data / "cls.npz", "--out",
                        tmp_path / "p.csv")
    assert rc == code and "corrupted" not in err and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


def test_ctrl_c_before_lbfgs_starts_stops_it(tmp_path, data, capsys, monkeypatch):
    monkeypatch.setattr(fastmlp.MLP, "fit", _signal_then(fastmlp.MLP.fit, signal.SIGINT))
    rc, out, err = call(capsys, "train", data / "cls.csv", "--solver", "lbfgs", "--epochs",
                        200, "--out", tmp_path / "m.npz")
    assert rc == 130 and "after 0 L-BFGS iterations" in err, err
    assert "cannot be resumed" in err and fastmlp.load(tmp_path / "m.npz").loss_curve_ == []


def test_ctrl_c_during_lbfgs_stops_after_the_iteration(tmp_path, data, capsys, monkeypatch):
    import fastmlp.model
    real = fastmlp.model.minimize_lbfgs

    def signalled(source, x0, on_iteration, **kw):  # SIGINT at the end of the third iteration
        count = [0]

        def on(x, loss):
            count[0] += 1
            if count[0] == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return on_iteration(x, loss)
        return real(source, x0, on_iteration=on, **kw)
    monkeypatch.setattr(fastmlp.model, "minimize_lbfgs", signalled)
    rc, out, err = call(capsys, "train", data / "cls.csv", "--solver", "lbfgs", "--epochs",
                        200, "--out", tmp_path / "m.npz")
    assert rc == 130 and "interrupted by SIGINT after 3 L-BFGS iterations" in err, err
    assert len(fastmlp.load(tmp_path / "m.npz").loss_curve_) == 3


def test_main_works_outside_the_main_thread(data, capsys):
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(rc=cli.main(
        ["train", str(data / "cls.csv"), "--epochs", "2", "--quiet"])))
    t.start()
    t.join(timeout=300)
    out, err = capsys.readouterr()
    assert result.get("rc") == 0, err
    assert "held-out accuracy" in out


# -- what a new user meets -------------------------------------------------------------------
def test_a_saved_pandas_index_is_dropped_and_repeated_names_are_reported(tmp_path, data,
                                                                         capsys):
    frame = pd.read_csv(data / "cls.csv").sort_values("kind")  # the index leaks the label
    frame.to_csv(tmp_path / "indexed.csv")  # pandas' default: the index as a first column
    report = _train_json(capsys, tmp_path / "indexed.csv", "--epochs", 2)
    err = capsys.readouterr().err
    assert report["architecture"][0] == 4
    rc, out, err = call(capsys, "train", tmp_path / "indexed.csv", "--epochs", 2, "--quiet")
    assert "fastmlp: note: " in err and "dropped the unnamed first column" in err
    (tmp_path / "dup.csv").write_text("a,a,b,y\n" + "".join(
        f"{i},{i % 3},{i % 5},{i % 2}\n" for i in range(30)))
    rc, out, err = call(capsys, "train", tmp_path / "dup.csv", "--epochs", 2, "--quiet")
    assert rc == 0 and "repeated column name(s) 'a'" in err and "'a.1'" in err


def test_threads_option_reaches_both_solvers(data, capsys, monkeypatch):
    import numba
    from threadpoolctl import threadpool_info
    from fastmlp import kernels
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two cores to tell one thread from the default")
    from fastmlp._core import Trainer
    seen = []
    real, done = kernels.forward_backward, Trainer._steps_done

    def spy(*args, **kwargs):  # L-BFGS's evaluations run this kernel, adam's epochs the hook
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        seen.append((numba.get_num_threads(), max(blas)))
        return (real if len(args) > 2 else done)(*args, **kwargs)
    monkeypatch.setattr(kernels, "forward_backward", spy)
    monkeypatch.setattr(Trainer, "_steps_done", spy)
    for solver in ("adam", "lbfgs"):
        seen.clear()
        _train_json(capsys, data / "cls.csv", "--solver", solver, "--epochs", 2)
        assert max(max(s) for s in seen) == 2, (solver, seen)  # the default: every core
        seen.clear()
        _train_json(capsys, data / "cls.csv", "--solver", solver, "--epochs", 2,
                    "--threads", 1)
        assert seen and all(s == (1, 1) for s in seen), (solver, seen)


def test_val_fraction_is_honoured_by_the_digits_job(capsys):
    for fraction, held_out in (("0.5", 899), ("0", 0), ("0.25", 450)):
        report = _train_json(capsys, "--val-fraction", fraction, "--epochs", 1)
        assert report["n_held_out"] == held_out and report["n_train"] == 1797 - held_out


def test_reports_say_what_was_run(data, capsys):
    report = _train_json(capsys, data / "cls.csv", "--solver", "lbfgs", "--epochs", 5)
    assert report["dtype"] == "float64" and report["samples_per_s"] is None
    rc, out, err = call(capsys, "train", data / "cls.csv", "--epochs", 3)
    first = [line for line in err.splitlines() if line.startswith("epoch ")][0]
    assert first.startswith("epoch 1/3") and first.endswith("ETA -:--")  # JIT in epoch 1


def test_the_csv_reader_is_a_runtime_dependency_and_parquet_says_what_it_needs(tmp_path,
                                                                                data):
    tomllib = pytest.importorskip("tomllib")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for d in deps}
    assert "pandas" in names and "pyarrow" not in names
    code = ("import sys\n"  # an environment without pyarrow: its import fails
            "class NoPyarrow:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'pyarrow':\n"
            "            raise ImportError('No module named pyarrow')\n"
            "sys.meta_path.insert(0, NoPyarrow())\n"
            "from fastmlp.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "train", str(data / "cls.csv"),
                        "--epochs", "1", "--quiet"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", code, "train", str(data / "cls.parquet"),
                        "--epochs", "1", "--quiet"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert_user_error(r.returncode, r.stderr, "needs pyarrow", "pip install pyarrow")


def test_outputs_follow_symlinks_and_write_into_devices(tmp_path, data, cls_model):
    target = tmp_path / "real.csv"
    target.write_text("old")
    os.chmod(target, 0o644)
    (tmp_path / "link.csv").symlink_to(target)
    r = run("predict", cls_model, data / "cls.csv", "--out", tmp_path / "link.csv",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link.csv").is_symlink() and target.read_text().startswith("prediction")
    assert os.stat(target).st_mode & 0o777 == 0o644
    r = run("predict", cls_model, data / "cls.csv", "--out", "/dev/stdout", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "prediction" and len(r.stdout.splitlines()) == 301
    r = run("train", data / "cls.csv", "--epochs", 2, "--quiet", "--out", "/dev/null",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert sorted(os.listdir(tmp_path)) == ["link.csv", "real.csv"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_failed_write_is_one_line(data, cls_model, capsys):
    rc, out, err = call(capsys, "predict", cls_model, data / "cls.csv", "--out", "/dev/full")
    assert rc == 1 and err == "fastmlp: error: /dev/full: No space left on device\n", err


def _train_options():
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    return {a.dest: a for a in train._actions}


def test_help_offers_every_activation_and_solver():
    """The command line's --activation and --solver offer exactly the names that
    fastmlp._validation lists (the one list the estimators, model files and ONNX export use
    too), and a saved record's settings are checked against the same list."""
    from fastmlp.cli import record as cli_record
    from fastmlp._validation import ACTIVATIONS, ESTIMATOR_ACTIVATIONS, SOLVERS
    options = _train_options()
    assert list(options["activation"].choices) == list(ACTIVATIONS)
    assert list(options["solver"].choices) == list(SOLVERS)
    assert set(ESTIMATOR_ACTIVATIONS) | {"sigmoid"} == set(ACTIVATIONS)
    for name in ACTIVATIONS:
        assert cli_record._SETTING_CHECKS["activation"](name)
    for name in SOLVERS:
        assert cli_record._SETTING_CHECKS["solver"](name)
    assert not cli_record._SETTING_CHECKS["activation"]("softmax")


def test_version_is_the_package_version(capsys):
    from fastmlp._version import __version__
    assert fastmlp.__version__ == __version__
    rc, out, _ = call(capsys, "--version")
    assert rc == 0 and out.strip() == f"fastmlp {__version__}"


def test_val_data_with_a_class_the_training_rows_lack_is_refused(tmp_path, data, capsys):
    """--val-data whose target has a class that DATA lacks would train a model with an
    output no row teaches (issue 20 item 3): one line naming the class, exit 2, nothing
    written -- as MLPClassifier refuses such a y_val."""
    frame = pd.read_csv(data / "cls.csv").iloc[:30].copy()
    frame.loc[[3, 7], "kind"] = "east"
    frame.to_csv(tmp_path / "val.csv", index=False)
    out_file = tmp_path / "m.npz"
    rc, out, err = call(capsys, "train", data / "cls.csv", "--val-data", tmp_path / "val.csv",
                        "--epochs", "1", "--out", out_file, "--quiet")
    assert_user_error(rc, err, "val.csv: class 'east' not in DATA's training rows",
                      "'north', 'south', 'west'")
    assert not out_file.exists()
    frame.loc[[3, 7], "kind"] = "north"  # every class known: trains
    frame.to_csv(tmp_path / "val.csv", index=False)
    rc, out, err = call(capsys, "train", data / "cls.csv", "--val-data", tmp_path / "val.csv",
                        "--epochs", "1", "--out", out_file, "--quiet")
    assert rc == 0, err
    assert list(fastmlp.load(out_file).classes_) == ["north", "south", "west"]


def test_evaluate_refuses_a_target_that_is_not_the_classifiers_labels(tmp_path, data,
                                                                      cls_model, capsys):
    """A classifier evaluated on a continuous target printed accuracy 0.0000 (issue 20
    item 16): refused as scikit-learn refuses "continuous and multiclass", and so is a
    target none of whose values is a class; some unknown labels are counted wrong, with a
    note."""
    frame = pd.read_csv(data / "cls.csv").iloc[:40].copy()
    rs = np.random.RandomState(3)
    cases = {"cont": rs.randn(40), "ints": rs.randint(0, 3, 40)}
    for name, target in cases.items():
        frame.assign(kind=target).to_csv(tmp_path / f"{name}.csv", index=False)
    rc, out, err = call(capsys, "evaluate", cls_model, tmp_path / "cont.csv")
    assert_user_error(rc, err, "cont.csv: the target 'kind' has continuous values",
                      "this model is a classifier (classes: north, south, west)")
    assert out == ""
    rc, out, err = call(capsys, "evaluate", cls_model, tmp_path / "ints.csv")
    assert_user_error(rc, err, "no value of the target 'kind' (0, 1, 2) is one of the "
                               "model's classes (north, south, west)")
    frame.loc[:3, "kind"] = "east"
    frame.to_csv(tmp_path / "some.csv", index=False)
    rc, out, err = call(capsys, "evaluate", cls_model, tmp_path / "some.csv")
    assert rc == 0, err
    assert err.strip() == ("fastmlp: note: 4 of 40 rows have labels that are not among the "
                           "model's classes (east): they count as wrong")
    assert out.startswith("accuracy: ")


def test_local_and_dask_runs_share_the_task_rule():
    # one rule for a numeric target (data.task_for_numbers), used by detect_task and --dask
    from fastmlp.cli import cluster
    from fastmlp.cli.data import detect_task, task_for_numbers
    assert cluster.task_for_numbers is task_for_numbers
    assert detect_task(np.arange(20.0), "y") == task_for_numbers(True, 20) == "classify"
    assert detect_task(np.arange(21), "y") == task_for_numbers(True, 21) == "regress"
    assert detect_task(np.arange(5) + 0.5, "y") == task_for_numbers(False, 5) == "regress"


def test_digits_by_lbfgs_trains_softmax_and_log_loss(capsys):
    """The digits job by L-BFGS: softmax + log loss (sigmoid + squared error meets L-BFGS's
    gradient tolerance at ~0.79 held-out accuracy), as accurate as scikit-learn's L-BFGS."""
    report = _train_json(capsys, "--solver", "lbfgs")
    assert report["solver"] == "lbfgs" and report["held_out"] > 0.95
