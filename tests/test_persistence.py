"""save/load: round trips for every model kind, resumable state, damaged, fuzzed and tampered
files (every field validated as untrusted input), atomic writes (modes, symlinks, devices)."""
import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import persistence
from fastmlp.persistence import ModelFileError

RS = np.random.RandomState(0)
X = RS.randn(120, 5)
Y2 = RS.randn(120, 2)


def _params(m):
    return np.concatenate([a.ravel() for a in m.coefs_ + m.intercepts_])


def _same_predictions(a, b, X):
    pa, pb = a.predict(X), b.predict(X)
    assert np.array_equal(np.asarray(pa), np.asarray(pb))


# -- MLP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_round_trip_then_training_continues_identically(tmp_path, dtype, optimizer):
    kw = dict(epochs=2, batch_size=32, optimizer=optimizer,
              momentum=0.9 if optimizer == "sgd" else 0.0, learning_rate=0.01)
    m = fastmlp.MLP([5, 7, 2], activation="tanh", dtype=dtype, alpha=1e-3, random_state=3)
    m.partial_fit(X, Y2, **kw)
    m.classes_ = np.array(["a", "b"])
    m.feature_names_in_ = np.array(list("vwxyz"))
    path = tmp_path / "m.npz"
    m.save(path)
    m2 = fastmlp.load(path)
    assert type(m2) is fastmlp.MLP and m2.dtype == m.dtype and m2.layer_sizes == m.layer_sizes
    assert m2.loss_curve_ == m.loss_curve_
    assert list(m2.classes_) == ["a", "b"] and list(m2.feature_names_in_) == list("vwxyz")
    _same_predictions(m, m2, X)
    m.partial_fit(X, Y2, **kw)
    m2.partial_fit(X, Y2, **kw)  # optimizer state and RNG state came back too
    assert np.array_equal(_params(m), _params(m2))
    assert m.loss_curve_ == m2.loss_curve_


def test_unfitted_mlp_round_trip(tmp_path):
    m = fastmlp.MLP([3, 2], random_state=1)
    fastmlp.persistence.save(m, tmp_path / "u.npz")
    m2 = fastmlp.load(tmp_path / "u.npz")
    assert m2.optimizer_settings_ is None and m2.layer_sizes == (3, 2)
    with pytest.raises(AttributeError):
        m2.coefs_
    m.fit(X[:, :3], Y2, epochs=1)
    m2.fit(X[:, :3], Y2, epochs=1)
    assert np.array_equal(_params(m), _params(m2))


def test_interrupted_epoch_is_saved_and_resumed_to_the_same_weights(tmp_path, stop_after):
    kw = dict(batch_size=16, optimizer="adam", learning_rate=0.01)
    ref = fastmlp.MLP([5, 6, 2], dtype="float64", random_state=0)
    for _ in range(4):
        ref.partial_fit(X, Y2, epochs=1, **kw)

    m = fastmlp.MLP([5, 6, 2], dtype="float64", random_state=0)
    m.partial_fit(X, Y2, epochs=1, **kw)
    stop_after(m, 3)  # 8 batches an epoch: stops inside epoch 2
    m.partial_fit(X, Y2, epochs=1, **kw)
    assert m.pending_epoch == {"epoch": 2, "position": 48, "n_rows": 120}
    assert len(m.loss_curve_) == 1
    m.save(tmp_path / "ckpt.npz")
    r = fastmlp.load(tmp_path / "ckpt.npz")
    assert r.pending_epoch["position"] == 48
    while len(r.loss_curve_) < 4:
        r.partial_fit(X, Y2, epochs=1, **kw)
    assert np.array_equal(_params(r), _params(ref))
    # the stopped epoch's loss is summed in two parts: equal up to rounding
    np.testing.assert_allclose(r.loss_curve_, ref.loss_curve_, rtol=1e-12)


# -- estimators -----------------------------------------------------------------------------
def _estimator_cases():
    from fastmlp.estimators import MLPClassifier, MLPRegressor
    rs = np.random.RandomState(1)
    labels = np.array(["cat", "dog", "eel"])[rs.randint(0, 3, 120)]
    binary = rs.randint(0, 2, 120)
    multilabel = rs.randint(0, 2, (120, 3))
    y = X @ rs.randn(5)
    return [
        (MLPClassifier(hidden_layer_sizes=(6,), max_iter=4, random_state=0), labels),
        (MLPClassifier(hidden_layer_sizes=(6, 4), solver="sgd", max_iter=4, random_state=0,
                       early_stopping=True), binary),
        (MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=5, random_state=0),
         multilabel),
        (MLPRegressor(hidden_layer_sizes=(6,), max_iter=4, random_state=0), y),
        (MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=5, random_state=0), y),
        (MLPRegressor(hidden_layer_sizes=(6,), solver="sgd", max_iter=3, random_state=0),
         np.c_[y, -y]),
    ]


@pytest.mark.parametrize("case", range(6))
def test_estimator_round_trip(tmp_path, case):
    est, y = _estimator_cases()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X.astype(np.float32) if case == 3 else X, y)
    est.save(tmp_path / "e.npz")
    e2 = fastmlp.load(tmp_path / "e.npz")
    assert type(e2) is type(est)
    assert e2.get_params() == est.get_params()
    _same_predictions(est, e2, X)
    if hasattr(est, "predict_proba"):
        assert np.array_equal(est.predict_proba(X), e2.predict_proba(X))
        assert np.array_equal(est.classes_, e2.classes_)
    for name in ("n_iter_", "n_layers_", "n_outputs_", "out_activation_", "t_",
                 "n_features_in_", "loss_curve_", "best_loss_"):
        if hasattr(est, name):
            assert getattr(e2, name) == getattr(est, name), name
    if est.solver != "lbfgs" and not est.early_stopping:  # optimizer state came back
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.partial_fit(X, y)
            e2.partial_fit(X, y)
        for a, b in zip(est.coefs_ + est.intercepts_, e2.coefs_ + e2.intercepts_):
            assert np.array_equal(a, b)


def test_estimator_feature_names_and_unfitted(tmp_path):
    pd = pytest.importorskip("pandas")
    from fastmlp.estimators import MLPRegressor
    df = pd.DataFrame(X, columns=list("abcde"))
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(df, X[:, 0])
    est.save(tmp_path / "e.npz")
    e2 = fastmlp.load(tmp_path / "e.npz")
    assert list(e2.feature_names_in_) == list("abcde")
    assert np.array_equal(est.predict(df), e2.predict(df))
    MLPRegressor(hidden_layer_sizes=(3,)).save(tmp_path / "u.npz")
    assert not hasattr(fastmlp.load(tmp_path / "u.npz"), "coefs_")


def test_save_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError):
        persistence.save(object(), tmp_path / "x.npz")
    assert not os.path.exists(tmp_path / "x.npz")


# -- damaged files --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    m = fastmlp.MLP([5, 4, 2], dtype="float64", random_state=0)
    m.partial_fit(X, Y2, epochs=1, batch_size=32, optimizer="adam", learning_rate=0.01)
    path = tmp_path_factory.mktemp("good") / "m.npz"
    m.save(path)
    return path, m


def _write(path, data):
    path.write_bytes(data)
    return path


def test_truncated_files_are_refused(tmp_path, good_file):
    data = good_file[0].read_bytes()
    for n in sorted(set(np.linspace(0, len(data) - 1, 40).astype(int))):
        with pytest.raises(ModelFileError):
            fastmlp.load(_write(tmp_path / "t.npz", data[:n]))


def test_fuzzed_files_are_refused_or_load_the_same_model(tmp_path, good_file):
    path, m = good_file
    data = good_file[0].read_bytes()
    rs = np.random.RandomState(42)
    refused = 0
    for _ in range(300):
        b = bytearray(data)
        for pos in rs.randint(0, len(b), rs.randint(1, 4)):
            b[pos] ^= 1 << rs.randint(8)
        try:
            m2 = fastmlp.load(_write(tmp_path / "f.npz", bytes(b)))
        except ModelFileError:
            refused += 1
            continue
        # a flip in bytes nobody reads (a zip timestamp): the very same model
        assert np.array_equal(_params(m2), _params(m))
        assert m2.loss_curve_ == m.loss_curve_
    assert refused > 250


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for n, raw in members.items():
            z.writestr(n, raw)
    return path


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _meta(members):
    return json.loads(np.load(io.BytesIO(members["__meta__.npy"])).tobytes())


def _with_meta(members, meta, redigest=True):
    if redigest:
        arrays = {n[:-4]: np.load(io.BytesIO(raw)) for n, raw in members.items()
                  if n != "__meta__.npy"}
        meta.pop("sha256", None)
        meta["sha256"] = persistence._digest(arrays, meta)
    out = dict(members)
    out["__meta__.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return out


def test_tampered_weights_fail_the_checksum(tmp_path, good_file):
    members = _members(good_file[0])
    p = np.load(io.BytesIO(members["params.npy"]))
    p[0] += 1.0
    members["params.npy"] = _npy(p)  # a valid zip and .npy: only the digest can tell
    with pytest.raises(ModelFileError, match="checksum"):
        fastmlp.load(_rezip(tmp_path / "x.npz", members))


def test_newer_format_is_refused_with_a_clear_message(tmp_path, good_file):
    members = _members(good_file[0])
    meta = _meta(members)
    meta["format_version"] = persistence.FORMAT_VERSION + 1
    with pytest.raises(ModelFileError, match="newer fastmlp"):
        fastmlp.load(_rezip(tmp_path / "x.npz", _with_meta(members, meta)))


def test_pickled_objects_are_never_loaded(tmp_path, good_file):
    members = _members(good_file[0])
    members["params.npy"] = _npy(np.array([object()], dtype=object))
    with pytest.raises(ModelFileError):
        fastmlp.load(_rezip(tmp_path / "x.npz", members))
    # and a manifest that declares an object array is refused before reading it
    members = _members(good_file[0])
    meta = _meta(members)
    meta["arrays"]["params"] = ["|O", [1]]
    with pytest.raises(ModelFileError):
        fastmlp.load(_rezip(tmp_path / "y.npz", _with_meta(members, meta, redigest=False)))


def test_huge_shape_claims_are_refused_before_allocating(tmp_path, good_file):
    members = _members(good_file[0])
    raw = members["params.npy"]
    header_end = raw.index(b"\n") + 1
    header = raw[:header_end].decode("latin1")
    start = header.index("'shape': (") + len("'shape': (")
    stop = header.index(")", start)
    fake = (header[:start] + "10000000000000," + header[stop:]).encode("latin1")
    members["params.npy"] = fake + raw[header_end:]  # header length changed: still refused
    with pytest.raises(ModelFileError):
        fastmlp.load(_rezip(tmp_path / "x.npz", members))


@pytest.mark.parametrize("change", ["extra member", "missing member", "not json", "kind",
                                    "bad layer sizes"])
def test_structural_damage_is_refused(tmp_path, good_file, change):
    members = _members(good_file[0])
    if change == "extra member":
        members["evil.npy"] = _npy(np.zeros(3))
    elif change == "missing member":
        del members["params.npy"]
    elif change == "not json":
        members["__meta__.npy"] = _npy(np.frombuffer(b"{not json", np.uint8))
    else:
        meta = _meta(members)
        if change == "kind":
            meta["kind"] = "os.system"
        else:
            meta["model"]["layer_sizes"] = [5, 40, 2]
        members = _with_meta(members, meta)
    with pytest.raises(ModelFileError):
        fastmlp.load(_rezip(tmp_path / "x.npz", members))


def test_other_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        fastmlp.load(tmp_path / "missing.npz")
    with pytest.raises(ModelFileError, match="not a fastmlp model"):
        fastmlp.load(_write(tmp_path / "a.csv", b"a,b\n1,2\n"))
    np.savez(tmp_path / "plain.npz", X=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a fastmlp model"):
        fastmlp.load(tmp_path / "plain.npz")
    with pytest.raises(ModelFileError):
        fastmlp.load(tmp_path)


# -- atomic writes --------------------------------------------------------------------------
def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, good_file):
    path = tmp_path / "m.npz"
    path.write_bytes(good_file[0].read_bytes())
    before = path.read_bytes()

    def half_then_ctrl_c(f):
        f.write(b"PK\x03\x04 half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        persistence.atomic_write(path, half_then_ctrl_c)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
    fastmlp.load(path)


# -- the optional standardisation (format 2) -------------------------------------------------
OLD_V1_MODEL = os.path.join(os.path.dirname(__file__), "data", "old_v1_model.npz")


def _scaled_mlp():
    m = fastmlp.MLP([5, 4, 2], dtype="float64", random_state=0)
    m.partial_fit(X, Y2, epochs=1, batch_size=32, optimizer="adam", learning_rate=0.01)
    m.x_mean_, m.x_scale_ = X.mean(0), X.std(0)
    m.y_mean_, m.y_scale_ = np.array([1.5, -2.0]), np.array([3.0, 0.5])
    return m


def test_scaling_round_trips_and_marks_the_file_format_2(tmp_path, good_file):
    m = _scaled_mlp()
    m.save(tmp_path / "s.npz")
    meta = persistence.read_metadata(tmp_path / "s.npz")
    assert meta["format_version"] == 2 and meta["scaling"] == {"x": True, "y": True}
    m2 = fastmlp.load(tmp_path / "s.npz")
    for k in ("x_mean_", "x_scale_", "y_mean_", "y_scale_"):
        assert getattr(m2, k).dtype == np.float64
        assert np.array_equal(getattr(m2, k), getattr(m, k)), k
    _same_predictions(m, m2, X)
    m2.save(tmp_path / "again.npz")  # load -> save keeps it
    assert np.array_equal(fastmlp.load(tmp_path / "again.npz").y_scale_, m.y_scale_)
    # without scaling: format 1, as before, and no attributes
    assert persistence.read_metadata(good_file[0])["format_version"] == 1
    assert "scaling" not in persistence.read_metadata(good_file[0])
    assert getattr(fastmlp.load(good_file[0]), "x_mean_", None) is None


def test_estimator_scaling_round_trip(tmp_path):
    from fastmlp.estimators import MLPClassifier
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, (X[:, 0] > 0).astype(int))
    est.x_mean_, est.x_scale_ = X.mean(0), X.std(0)  # features only: a classifier
    est.save(tmp_path / "e.npz")
    e2 = fastmlp.load(tmp_path / "e.npz")
    assert np.array_equal(e2.x_scale_, est.x_scale_) and not hasattr(e2, "y_mean_")
    assert persistence.read_metadata(tmp_path / "e.npz")["scaling"] == {"x": True}


def test_a_file_from_before_scaling_still_loads():
    """Written by fastmlp's first file format (a `fastmlp train` of a small regression)."""
    meta = persistence.read_metadata(OLD_V1_MODEL)
    assert meta["format_version"] == 1 and "scaling" not in meta
    m = fastmlp.load(OLD_V1_MODEL)
    assert m.layer_sizes == (3, 4, 1) and len(m.loss_curve_) == 3
    assert all(getattr(m, k, None) is None for k in ("x_mean_", "x_scale_", "y_mean_",
                                                     "y_scale_"))
    assert np.isfinite(m.predict(np.zeros((2, 3)))).all()


@pytest.mark.parametrize("attrs,message", [
    ({"x_mean_": np.zeros(5)}, "go together"),
    ({"x_mean_": np.zeros(4), "x_scale_": np.ones(4)}, "4 values but the model has 5 inputs"),
    ({"x_mean_": np.zeros(5), "x_scale_": np.r_[np.ones(4), 0.0]}, "positive"),
    ({"y_mean_": [np.nan, 0.0], "y_scale_": [1.0, 1.0]}, "finite"),
    ({"y_mean_": ["a", "b"], "y_scale_": [1.0, 1.0]}, "not numbers"),
])
def test_bad_scaling_is_refused_at_save(tmp_path, attrs, message):
    m = fastmlp.MLP([5, 4, 2], random_state=0)
    for k, v in attrs.items():
        setattr(m, k, v)
    with pytest.raises(ValueError, match=message):
        m.save(tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("change", ["negative scale", "wrong length", "entry in format 1",
                                    "arrays without the entry", "entry without arrays",
                                    "float32", "bad entry"])
def test_damaged_scaling_is_refused_at_load(tmp_path, change):
    _scaled_mlp().save(tmp_path / "s.npz")
    members = _members(tmp_path / "s.npz")
    meta = _meta(members)
    if change == "negative scale":
        members["scaling/x_scale.npy"] = _npy(-np.ones(5))
    elif change == "wrong length":
        members["scaling/y_mean.npy"] = _npy(np.zeros(3))
        meta["arrays"]["scaling/y_mean"] = ["<f8", [3]]
    elif change == "entry in format 1":
        meta["format_version"] = 1
    elif change == "arrays without the entry":
        del meta["scaling"]
    elif change == "entry without arrays":
        for k in ("scaling/y_mean", "scaling/y_scale"):
            del members[k + ".npy"], meta["arrays"][k]
    elif change == "float32":
        members["scaling/x_mean.npy"] = _npy(np.zeros(5, np.float32))
        meta["arrays"]["scaling/x_mean"] = ["<f4", [5]]
    else:
        meta["scaling"] = {"x": "yes"}
    with pytest.raises(ModelFileError):
        fastmlp.load(_rezip(tmp_path / "x.npz", _with_meta(members, meta)))


# -- every field is untrusted: a recomputed checksum proves nothing ------------------------------
def _edit(tmp_path, path, change):
    """The file at path with change(meta, members) applied and the checksum recomputed."""
    members = _members(path)
    meta = _meta(members)
    change(meta, members)
    return _rezip(tmp_path / "edited.npz", _with_meta(members, meta))


def _set_array(members, meta, name, a):
    members[name + ".npy"] = _npy(a)
    meta["arrays"][name] = [a.dtype.str, list(a.shape)]


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    m = fastmlp.MLP([5, 4, 3], out_activation="softmax", loss="log_loss", dtype="float64",
                    random_state=0)
    m.partial_fit(X, np.eye(3)[RS.randint(0, 3, 120)], epochs=1, batch_size=32)
    m.classes_ = np.array(["a", "b", "c"])
    path = tmp_path_factory.mktemp("clf") / "m.npz"
    m.save(path)
    return path


@pytest.mark.parametrize("change,message", [
    (lambda meta, mem: _set_array(mem, meta, "attr/classes_", np.array(["a", "b"])), "classes"),
    (lambda meta, mem: _set_array(mem, meta, "attr/classes_", np.array([["a", "b", "c"]] * 3)),
     "classes"),
    (lambda meta, mem: _set_array(mem, meta, "attr/classes_", np.array(["a", "a", "c"])),
     "classes"),
    (lambda meta, mem: meta.pop("created"), "created"),
    (lambda meta, mem: meta.update(extra=["not", "a", "dict"]), "extra"),
    (lambda meta, mem: meta["model"].update(loss_curve=["0.5"]), "loss curve"),
    (lambda meta, mem: meta["model"].update(batch_size="32"), "batch size"),
    (lambda meta, mem: meta["model"].update(batch_size=10 ** 12), "memory"),
    (lambda meta, mem: meta["model"].update(alpha=-1), "alpha"),
    (lambda meta, mem: meta["model"].update(activation="os.system"), "activation"),
    (lambda meta, mem: meta["model"]["optimizer"]["hyper"].update(learning_rate="x"),
     "learning_rate"),
    (lambda meta, mem: meta["model"]["optimizer"]["hyper"].update(beta_1=7.0), "beta_1"),
    (lambda meta, mem: meta["model"]["rng"].update(pos=10 ** 6), "random state"),
    (lambda meta, mem: meta["model"].update(fitted="yes"), "fitted"),
])
def test_edited_fields_are_refused_even_with_a_valid_checksum(tmp_path, classifier_file,
                                                                change, message):
    with pytest.raises(ModelFileError, match=message):
        fastmlp.load(_edit(tmp_path, classifier_file, change))


def test_layer_sizes_are_checked_against_the_stored_weights_before_allocating(tmp_path,
                                                                              good_file):
    import tracemalloc

    def claim_big_layers(meta, members):  # 5-4000-4000-2: 128 MB of float64 parameters
        meta["model"]["layer_sizes"] = [5, 4000, 4000, 2]
    path = _edit(tmp_path, good_file[0], claim_big_layers)
    tracemalloc.start()
    with pytest.raises(ModelFileError, match="wrong shape"):
        fastmlp.load(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_estimator_fields_are_checked(tmp_path):
    from fastmlp.estimators import MLPClassifier
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, np.array(["x", "y", "z"])[RS.randint(0, 3, 120)])
    est.save(tmp_path / "e.npz")

    def fewer_classes(meta, members):
        _set_array(members, meta, "attr/classes_", np.array(["x", "y"]))

    def other_hidden(meta, members):
        meta["model"]["params"]["hidden_layer_sizes"] = [7]

    def string_loss(meta, members):
        meta["model"]["attrs"]["loss_"] = "0.3"
    for change in (fewer_classes, other_hidden, string_loss):
        with pytest.raises(ModelFileError):
            fastmlp.load(_edit(tmp_path, tmp_path / "e.npz", change))


# -- what the writes leave on disk ------------------------------------------------------------
def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path, good_file):
    m = good_file[1]
    old = os.umask(0o022)
    try:
        m.save(tmp_path / "new.npz")
        assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o644
        os.umask(0o077)
        m.save(tmp_path / "private.npz")
        assert os.stat(tmp_path / "private.npz").st_mode & 0o777 == 0o600
        os.chmod(tmp_path / "new.npz", 0o640)
        m.save(tmp_path / "new.npz")
        assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_a_symlink_is_followed_and_kept(tmp_path, good_file):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    good_file[1].save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert np.array_equal(_params(fastmlp.load(target)), _params(good_file[1]))
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "made.npz")
    good_file[1].save(dangling)
    assert dangling.is_symlink() and (tmp_path / "made.npz").is_file()


def test_devices_and_fifos_are_written_into(tmp_path, good_file):
    import threading
    persistence.atomic_write("/dev/null", lambda f: f.write(b"into the void"))
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    persistence.atomic_write(fifo, lambda f: f.write(b"through the pipe"))
    reader.join(timeout=60)
    assert got == [b"through the pipe"]
    assert not os.path.isfile(fifo) and os.listdir(tmp_path) == ["pipe"]


def test_saving_into_a_missing_folder_names_the_folder(tmp_path, good_file):
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        good_file[1].save(tmp_path / "missing" / "m.npz")
    assert ".tmp" not in str(err.value)


# -- a small file must not make the loader allocate much (issue 20 item 8) -------------------
_ZEROS_MB = 128


def _deflated_zeros_file(path, members, name, header_shape, lie_size=None):
    """``members`` rezipped with ``name`` replaced by a .npy of header_shape whose data is
    _ZEROS_MB MiB of zeros, deflated (streamed: the test itself allocates little);
    ``lie_size``: the zip directory then claims that uncompressed size."""
    import struct
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": header_shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, raw in members.items():
            if n != name:
                z.writestr(n, raw, compress_type=zipfile.ZIP_STORED)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as f:
            f.write(header.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(_ZEROS_MB):
                f.write(chunk)
    if lie_size is not None:
        b = bytearray(path.read_bytes())
        i = b.find(b"PK\x01\x02")
        while i >= 0:
            n_len = struct.unpack_from("<H", b, i + 28)[0]
            if bytes(b[i + 46:i + 46 + n_len]) == name.encode():
                struct.pack_into("<I", b, i + 24, lie_size)
                local = struct.unpack_from("<I", b, i + 42)[0]
                struct.pack_into("<I", b, local + 22, lie_size)
            i = b.find(b"PK\x01\x02", i + 4)
        path.write_bytes(bytes(b))
    return path


def _peak_of_refused_load(path, match):
    import tracemalloc
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=match):
            fastmlp.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("case", ["float member", "int member", "honest manifest",
                                  "lying zip size"])
def test_a_small_file_with_a_huge_compressed_member_is_refused_without_decompressing(
        tmp_path, good_file, case):
    """A member replaced by 128 MiB of deflated zeros (the file stays well under 1 MB),
    the manifest claiming that size or the true one, the zip directory telling the truth or
    not: refused, and the loader never holds more than a few MB."""
    members = _members(good_file[0])
    meta = _meta(members)
    n = (_ZEROS_MB << 20) // 8
    name, match = "params", "more than the file holds"
    if case == "int member":
        name = "rng/keys"
        meta["arrays"][name] = ["<f8", [n]]  # any dtype: the claim is bounded by the file
    elif case == "float member":
        meta["arrays"][name] = ["<f8", [n]]
    else:  # the manifest says the network's size; the member is far larger than that
        match = "larger than its manifest says" if case == "honest manifest" else \
            "corrupted"
    shape = (n,)
    members = _with_meta(members, meta, redigest=False)
    size = None
    if case == "lying zip size":
        size = len(members["params.npy"])  # what the manifest implies
    path = _deflated_zeros_file(tmp_path / "bomb.npz", members, name + ".npy", shape, size)
    assert path.stat().st_size < 1 << 20
    peak = _peak_of_refused_load(path, match)
    assert peak < 4 << 20, peak


def test_float_arrays_are_bounded_by_the_network_the_file_describes(tmp_path, good_file):
    """Stored uncompressed (so within the file's size), an optimizer moment of 4000 values
    for a network of 34 parameters is refused before it is read."""
    path = _edit(tmp_path, good_file[0],
                 lambda meta, mem: _set_array(mem, meta, "opt/mu", np.zeros(4000)))
    with pytest.raises(ModelFileError, match="'opt/mu' claims 4000 values, more than the 34 "
                                             "parameters of the network"):
        fastmlp.load(path)


# -- SGD's learning-rate schedule is saved with the optimizer ------------------------------------
def _schedule_estimator(schedule):
    from fastmlp.estimators import MLPRegressor
    est = MLPRegressor(hidden_layer_sizes=(6,), solver="sgd", learning_rate=schedule,
                       learning_rate_init=0.05, power_t=0.3, n_iter_no_change=1, tol=10.0,
                       max_iter=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, X @ np.arange(5.0))
    return est


def _continue_both(a, b):
    y = X @ np.arange(5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            a.partial_fit(X, y)
            b.partial_fit(X, y)
    assert a._optimizer.learning_rate == b._optimizer.learning_rate
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.array_equal(p, q)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_sgd_schedule_round_trips(tmp_path, schedule):
    est = _schedule_estimator(schedule)
    est.save(tmp_path / "e.npz")
    hyper = _meta(_members(tmp_path / "e.npz"))["model"]["optimizer"]["hyper"]
    assert (hyper["schedule"], hyper["power_t"], hyper["learning_rate_init"]) == \
        (schedule, 0.3, 0.05)
    e2 = fastmlp.load(tmp_path / "e.npz")
    assert e2._optimizer.schedule == schedule
    _continue_both(est, e2)


def test_a_file_from_before_the_schedule_moved_keeps_the_estimator_schedule(tmp_path):
    est = _schedule_estimator("invscaling")
    est.save(tmp_path / "e.npz")

    def old_format(meta, members):
        for k in ("schedule", "power_t", "learning_rate_init"):
            del meta["model"]["optimizer"]["hyper"][k]
    e2 = fastmlp.load(_edit(tmp_path, tmp_path / "e.npz", old_format))
    assert (e2._optimizer.schedule, e2._optimizer.power_t) == ("invscaling", 0.3)
    _continue_both(est, e2)


@pytest.mark.parametrize("value", ["cosine", 3, None])
def test_a_bad_schedule_is_refused(tmp_path, value):
    est = _schedule_estimator("adaptive")
    est.save(tmp_path / "e.npz")
    edited = _edit(tmp_path, tmp_path / "e.npz",
                   lambda meta, mem: meta["model"]["optimizer"]["hyper"].update(schedule=value))
    with pytest.raises(ModelFileError, match="schedule"):
        fastmlp.load(edited)
