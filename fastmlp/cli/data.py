"""The command line's data: reading files and turning model outputs into predictions.

Formats: CSV/TSV with a header (pandas, a runtime dependency), Parquet (pandas with pyarrow,
optional: ``pip install pyarrow``), ``.npy`` (a 2-D array) and ``.npz`` (arrays ``X`` and
``y``).  Every problem becomes a :class:`UserError` naming the file, the column and the row;
sizes claimed by a file's header are checked against the file and the available memory
before anything is allocated.  :func:`predictions`, :func:`score` and :func:`to_dtype` are
the one place where a model's outputs are brought back to the data's units and scored;
:func:`network` the one place where a ``fastmlp.MLP`` and an estimator's file differ.
"""
import hashlib
import os
import re
import zipfile

import numpy as np

_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")
TABLE_FORMATS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
FORMATS = "CSV (.csv), TSV (.tsv), Parquet (.parquet), NumPy (.npy, .npz)"


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


def _human(nbytes):
    from .._state import _human
    return _human(nbytes)


def check_memory(nbytes, what):
    """UserError when nbytes exceed the available memory."""
    from .._state import check_memory as check
    try:
        check(nbytes, what)
    except MemoryError as exc:
        raise UserError(str(exc)) from None


class Dataset:
    """Features X (float64, (N, d)), target y ((N,) or None), and where they came from."""

    def __init__(self, X, y, feature_names, target_name, source, header_lines, notes=()):
        self.X, self.y = X, y
        self.notes = list(notes)  # one-line remarks about what was done to the file
        self.feature_names = feature_names  # list of str, or None for bare arrays
        self.target_name = target_name
        self.source = source
        self.header_lines = header_lines  # file line of data row 0, minus 1 (CSV header)

    def fingerprint(self):
        h = hashlib.sha256(np.ascontiguousarray(self.X).tobytes())
        if self.y is not None:
            h.update(np.asarray(self.y).astype(str).tobytes())
        return h.hexdigest()


def data_format(path):
    name = os.path.basename(os.fspath(path)).lower()
    for c in _COMPRESSED:
        if name.endswith(c):
            name = name[: -len(c)]
            break
    ext = os.path.splitext(name)[1]
    if ext in (".parquet", ".pq"):
        return "parquet"
    if ext in TABLE_FORMATS or ext in (".npy", ".npz"):
        return ext[1:] if ext != ".tab" else "tsv"
    raise UserError(f"{path}: unknown data format {ext or '(no extension)'!r}; "
                    f"expected {FORMATS}")


def check_readable(path):
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, not a data file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: permission denied")


def _pandas(path):
    try:
        import pandas as pd
    except ImportError:  # a runtime dependency: only a broken installation lacks it
        raise UserError(f"{path}: reading tables needs pandas: pip install pandas") from None
    return pd


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_frame(path, fmt):
    pd = _pandas(path)
    try:
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UserError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow "
                                "(or the extra: pip install 'fastmlp[parquet]')") from None
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
    except UserError:
        raise
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text {fmt.upper()} file (cannot decode it)") from None
    except MemoryError:
        raise
    except Exception as exc:  # parser errors, pyarrow's ArrowInvalid, OSError, ...
        raise UserError(f"{path}: cannot read {fmt.upper()}: {_one_line(exc)}") from None


def _numeric_column(path, frame, name, header_lines, what="feature"):
    """Column -> float64 array; the first non-numeric, missing or infinite value is an
    error naming the column and the row."""
    pd = _pandas(path)
    col = frame[name]
    if col.dtype == bool:
        values = col.to_numpy(np.float64)
    else:
        try:
            values = pd.to_numeric(col, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            values = np.full(len(col), np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raw = col.iloc[i]
        where = f"{path}: {what} column {name!r}, row {i + 1}"
        if header_lines:
            where += f" (line {i + 1 + header_lines})"
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or pd.isna(raw):
            raise UserError(f"{where}: missing value")
        if np.isinf(values[i]):
            raise UserError(f"{where}: infinite value {str(raw)!r}")
        raise UserError(f"{where}: non-numeric value {str(raw)!r}")
    return values


def read_data(path, *, target=None, need_target=True, features=None, drop=()):
    """Read DATA.

    target: column name (tables), column index (.npy) or array name (.npz); None = the last
    column / ``y``.  need_target False: a missing target is fine (predict).  features: the
    model's feature names, selected by name when given (other columns are ignored)."""
    path = os.fspath(path)
    fmt = data_format(path)
    check_readable(path)
    if fmt in ("npy", "npz"):
        return _read_arrays(path, fmt, target, need_target)
    frame = _read_frame(path, fmt)
    header = 1 if fmt in ("csv", "tsv") else 0
    frame.columns = [str(c) for c in frame.columns]
    notes = _renamed_columns(path, fmt, list(frame.columns))
    if len(frame.columns) > 1 and frame.columns[0] == "Unnamed: 0":
        # pandas' to_csv writes the index as a first column with an empty name: a row
        # number, not a feature (it can leak the label when the rows are sorted by it)
        frame = frame.drop(columns=frame.columns[0])
        notes.append(f"{path}: dropped the unnamed first column (a saved row index)")
    columns = list(frame.columns)
    if len(frame) == 0:
        raise UserError(f"{path}: the table has no rows")
    if target is not None and target not in columns:
        if need_target:
            raise UserError(f"{path}: no column {target!r} (columns: {_names(columns)})")
        target = None
    if target is None and need_target:
        target = columns[-1]
    if features is not None:
        missing = [f for f in features if f not in columns]
        if missing:
            raise UserError(f"{path}: missing feature column(s) {_names(missing)} that the "
                            f"model was trained on")
        feature_names = list(features)
    else:
        feature_names = [c for c in columns if c != target and c not in drop]
    if not feature_names:
        raise UserError(f"{path}: no feature columns (only the target {target!r})")
    X = np.empty((len(frame), len(feature_names)), np.float64)
    for j, name in enumerate(feature_names):
        X[:, j] = _numeric_column(path, frame, name, header)
    y = None
    if target is not None:
        col = frame[target]
        if col.isna().any():
            i = int(np.argmax(col.isna().to_numpy()))
            raise UserError(f"{path}: target column {target!r}, row {i + 1}"
                            + (f" (line {i + 1 + header})" if header else "")
                            + ": missing value")
        y = col.to_numpy()
        if y.dtype.kind == "O" or str(col.dtype) in ("category", "string"):
            y = col.astype(str).to_numpy()
        elif y.dtype.kind == "f" and not np.isfinite(y).all():
            i = int(np.argmax(~np.isfinite(y)))
            raise UserError(f"{path}: target column {target!r}, row {i + 1}"
                            + (f" (line {i + 1 + header})" if header else "")
                            + f": infinite value {str(col.iloc[i])!r}")
    return Dataset(X, y, feature_names, target, path, header, notes)


def _renamed_columns(path, fmt, columns):
    """Notes for the columns pandas renamed because their names repeat ('a' -> 'a.1')."""
    if fmt not in ("csv", "tsv"):
        return []
    pd = _pandas(path)
    try:
        raw = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", header=None, nrows=1,
                          dtype=str, keep_default_na=False).iloc[0].tolist()
    except Exception:  # the full read above succeeded; this is only for the note
        return []
    seen, repeated = set(), []
    for name in raw:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if not repeated:
        return []
    pattern = "(?:" + "|".join(re.escape(r) for r in repeated) + r")\.\d+"
    renamed = [c for c in columns if re.fullmatch(pattern, c)]
    return [f"{path}: repeated column name(s) {_names(repeated)}; the repeats were renamed "
            f"{_names(renamed)}"]


def _names(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _check_array(path, a, what):
    if a.dtype.kind not in "biuf":
        raise UserError(f"{path}: {what} must hold numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.argwhere(bad)[0]
        kind = "missing value (NaN)" if np.isnan(a[tuple(idx)]) else "infinite value"
        place = f"row {idx[0] + 1}" + (f", column {idx[1]}" if a.ndim == 2 else "")
        raise UserError(f"{path}: {what} {place}: {kind}")
    return a


def _npy_claim(f):
    """(shape, dtype, data bytes claimed) from the .npy header at f's position."""
    import numpy.lib.format as npformat
    version = npformat.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npformat.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = npformat.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    count = 1
    for n in shape:
        count *= int(n)
    return shape, dtype, count * dtype.itemsize


def _check_array_sizes(path, fmt):
    """Compare the sizes the .npy headers claim with the file's real size and the available
    memory, before numpy allocates them."""
    total = 0
    try:
        if fmt == "npy":
            with open(path, "rb") as f:
                shape, dtype, claimed = _npy_claim(f)
                have = os.fstat(f.fileno()).st_size - f.tell()
            if dtype.kind != "O" and claimed > have:
                raise UserError(f"{path}: truncated or damaged: its header claims an array of "
                                f"shape {shape} ({_human(claimed)}), the file holds "
                                f"{_human(have)}")
            total = claimed
        else:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with z.open(info) as f:
                        shape, dtype, claimed = _npy_claim(f)
                    if dtype.kind != "O" and claimed > info.file_size:
                        raise UserError(f"{path}: array {info.filename[:-4]!r} is truncated "
                                        f"or damaged: its header claims shape {shape} "
                                        f"({_human(claimed)}), the member holds "
                                        f"{_human(info.file_size)}")
                    total += max(claimed, info.file_size)
    except UserError:
        raise
    except MemoryError:
        raise
    except Exception:  # not a zip, a bad header: np.load below says what is wrong
        return
    check_memory(total, f"{path}: reading its arrays")


def _read_arrays(path, fmt, target, need_target):
    _check_array_sizes(path, fmt)
    try:
        loaded = np.load(path, allow_pickle=False)
        if fmt == "npz":
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
        else:
            arrays = {"": loaded}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise UserError(f"{path}: holds Python objects; only numeric arrays are read") \
                from None
        raise UserError(f"{path}: cannot read {fmt}: {_one_line(exc)}") from None
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile, OSError, EOFError, ...
        raise UserError(f"{path}: cannot read {fmt}: {_one_line(exc)}") from None
    if fmt == "npz":
        if "X" not in arrays:
            raise UserError(f"{path}: no array 'X' (arrays: {_names(sorted(arrays))})")
        X = arrays["X"]
        yname = target or "y"
        y = arrays.get(yname)
        if y is None and need_target:
            raise UserError(f"{path}: no target array {yname!r} "
                            f"(arrays: {_names(sorted(arrays))})")
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if X.ndim != 2:
            raise UserError(f"{path}: X must be 2-D, got shape {X.shape}")
        if y is not None:
            if y.ndim != 1 or len(y) != len(X):
                raise UserError(f"{path}: y must be 1-D with one value per row of X "
                                f"({len(X)}), got shape {y.shape}")
            if y.dtype.kind in "biuf":
                y = _check_array(path, y, "y")
            elif y.dtype.kind != "U":
                raise UserError(f"{path}: y must hold numbers or strings, got {y.dtype}")
    else:
        a = arrays[""]
        if a.ndim != 2:
            raise UserError(f"{path}: a .npy file must hold a 2-D array (target in a column), "
                            f"got shape {a.shape}")
        y = None
        if need_target or target is not None:
            try:
                col = int(target) if target is not None else a.shape[1] - 1
                col = range(a.shape[1])[col]
            except (ValueError, IndexError):
                raise UserError(f"{path}: --target must be a column index below {a.shape[1]} "
                                f"for a .npy file, got {target!r}") from None
            y = a[:, col]
            X = np.delete(a, col, axis=1)
            y = _check_array(path, y, "target column")
        else:
            X = a
    if X.shape[0] == 0:
        raise UserError(f"{path}: no rows")
    if X.shape[1] == 0:
        raise UserError(f"{path}: no feature columns")
    X = _check_array(path, X, "X")
    return Dataset(np.ascontiguousarray(X), y, None, None, path, 0)


def detect_task(y, name):
    """'classify' for labels (strings, booleans, or at most 20 distinct integers), else
    'regress'."""
    y = np.asarray(y)
    if y.dtype.kind in "OUSb":
        return "classify"
    return task_for_numbers(bool(y.dtype.kind in "iu" or np.all(np.mod(y, 1) == 0)),
                            len(np.unique(y)))


def task_for_numbers(whole, n_distinct):
    """The task of a numeric target (a local run's and a --dask run's one rule): 'classify'
    for whole numbers with at most 20 distinct values, else 'regress'."""
    return "classify" if whole and n_distinct <= 20 else "regress"


def class_labels(y):
    """Labels as given; integer-valued floats become integers (so classes print as 3, not
    3.0)."""
    y = np.asarray(y)
    if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0) and np.abs(y).max() < 2 ** 53:
        return y.astype(np.int64)
    if y.dtype.kind == "O":
        return y.astype(str)
    return y


# ---------------------------------------------------------------------------------------------
# model outputs in the data's units
def _where(source, names, i, j):
    name = f"column {names[j]!r}" if names is not None else f"column {j}"
    return f"{source}: feature {name}, row {i + 1}"


def to_dtype(X, dtype, source, names=None, raw=None, what="feature"):
    """X (float64, already in the model's units) as a contiguous array of ``dtype``; a value
    that does not fit (beyond float32's range) is an error naming its column and row.  raw:
    the values as read, for the message (default X)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(X, dtype)
    bad = ~np.isfinite(out)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad.reshape(len(out), -1))[0])
        value = float((X if raw is None else raw).reshape(len(out), -1)[i, j])
        where = (_where(source, names, i, j) if what == "feature" else
                 f"{source}: target, row {i + 1}")
        raise UserError(f"{where}: value {value!r} is beyond {np.dtype(dtype).name}'s range "
                        f"(use --dtype float64, or rescale the data)")
    return out


def unscale(model, out):
    """Regression outputs (N, k) in the target's units: the model's stored standardisation
    undone (a float64 array)."""
    mean, scale = getattr(model, "y_mean_", None), getattr(model, "y_scale_", None)
    out = np.asarray(out, np.float64).reshape(len(out), -1)
    return out if mean is None else out * scale + mean


def network(model):
    """What the commands need of a model file's network, whichever class wrote it: a
    ``fastmlp.MLP`` (every ``fastmlp train`` run) or one of the scikit-learn-style estimators
    (``MLPClassifier(...).save(path)`` in Python; ``fastmlp train --solver lbfgs`` files of
    fastmlp 0.x): the one place the commands tell the two apart."""
    from ..model import MLP
    return _MLPNetwork(model) if isinstance(model, MLP) else _EstimatorNetwork(model)


class _MLPNetwork:
    """A ``fastmlp.MLP``: its raw outputs; labels by the largest output, probabilities by
    normalising non-softmax (sigmoid: the digits job's) outputs."""

    def __init__(self, model):
        self.model, self.n_features, self.dtype = model, model.layer_sizes[0], model.dtype
        self.kind = "has no classes"

    def predict(self, X):
        model = self.model
        out = model.predict(X.astype(model.dtype, copy=False))
        classes = getattr(model, "classes_", None)
        if classes is not None:
            return classes[out.argmax(1)]
        return unscale(model, out).astype(model.dtype)

    def proba(self, X):
        out = self.model.predict(X.astype(self.model.dtype))
        if self.model.out_activation != "softmax":  # sigmoid outputs (digits): normalised
            out = np.clip(out, 0, None)
            s = out.sum(1, keepdims=True)
            out = np.where(s > 0, out / np.where(s > 0, s, 1), 1.0 / out.shape[1])
        return out


class _EstimatorNetwork:
    """A fitted ``MLPClassifier``/``MLPRegressor``: its own predict/predict_proba, given a
    frame with its feature names when it recorded some."""

    def __init__(self, model):
        self.model, self.n_features = model, model.n_features_in_
        self.dtype = model.coefs_[0].dtype
        self.kind = "is a regressor"

    def _frame(self, X):
        names = getattr(self.model, "feature_names_in_", None)
        if names is None:
            return X
        import pandas as pd
        return pd.DataFrame(X, columns=[str(n) for n in names])

    def predict(self, X):
        pred = np.asarray(self.model.predict(self._frame(X)))
        if hasattr(self.model, "classes_"):
            return pred
        return unscale(self.model, pred).astype(self.dtype)

    def proba(self, X):
        return self.model.predict_proba(self._frame(X))


def predictions(model, X):
    """What the model predicts for X (float64, already in the model's input units): class
    labels (N,) for a classifier, values (N, k) in the target's units for a regressor (of the
    model's precision)."""
    return network(model).predict(X)


def score(task, y, pred):
    """Accuracy (labels) or R^2 (values, first output) of predictions against y; None when
    there is nothing to score (no rows, or one row for R^2)."""
    if len(y) == 0:
        return None
    if task == "classify":
        y, pred = class_labels(y), np.asarray(pred).reshape(len(y))
        if y.dtype.kind != pred.dtype.kind:
            y, pred = y.astype(str), pred.astype(str)
        return float(np.mean(pred == y))
    if len(y) < 2:
        return None
    from sklearn.metrics import r2_score
    return float(r2_score(np.asarray(y, np.float64),
                          np.asarray(pred, np.float64).reshape(len(y), -1)[:, 0]))
