"""Model files: ``save(obj, path)``, ``load(path)``, and the atomic write behind every file
fastmlp writes.

This module knows the file format, not the models.  A model class gives its whole state as
plain values (``obj._get_state()``: JSON settings, arrays, optional scaling, see
:mod:`fastmlp._state`) and rebuilds itself from one (``cls._from_state(state)``); a small
registry (:func:`register`) maps the ``kind`` a file names to its class.

One file per model: an uncompressed ``.npz`` (a zip of ``.npy`` arrays, read with
``allow_pickle=False``) whose member ``__meta__`` is UTF-8 JSON:

    {"format": "fastmlp-model", "format_version": 1, "fastmlp_version": "...",
     "kind": "MLP" | "MLPClassifier" | "MLPRegressor", "created": ISO time,
     "arrays": {name: [dtype, shape], ...},   # the manifest of every other member
     "sha256": digest of the manifest's arrays and of this JSON without the digest,
     "model": {...},                           # the class's state (settings, fitted values)
     "scaling": {"x": true, "y": true},        # optional (format 2): see below
     "extra": {...}}                           # the caller's JSON (the command line's history)

Format versions: a file is written in the oldest version that can hold it, so older fastmlp
versions read what they can and refuse the rest with a request to upgrade.  1: the first
format; 2: adds the optional standardisation, plain float64 arrays ``scaling/x_mean``,
``scaling/x_scale`` (one per input) and ``scaling/y_mean``, ``scaling/y_scale`` (one per
output) -- the model's attributes ``x_mean_`` ... ``y_scale_``, applied by ``fastmlp
predict``/``evaluate`` (the model itself works in the scaled space).

Loading never executes code: JSON and plain numeric/string arrays only.  A file is untrusted
input: the checksum only detects damage (anyone can recompute it), so before any array is
read the manifest is checked against the zip directory and the file's real size, and then
every field is checked by the model class, sizes before anything is allocated.  A bad file
fails with :class:`ModelFileError` (a ``ValueError``) naming the problem.  Writes are atomic
(:func:`atomic_write`): a crash or Ctrl-C leaves the old file intact.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import zipfile
from typing import Any, BinaryIO, Callable, Optional, Union

import numpy as np
import numpy.lib.format as npformat

from ._state import ARRAY_KINDS as _ARRAY_KINDS, available_memory
from ._version import __version__

PathLike = Union[str, os.PathLike]

FORMAT = "fastmlp-model"
FORMAT_VERSION = 2  # the newest this version reads and writes
_SCALING_VERSION = 2
_META = "__meta__"
_MAX_META_BYTES = 64 << 20
_NPY_HEADER_MAX = 65536 + 16  # magic, header length and the header (numpy caps it at 64 KiB)
_KINDS = {}  # kind -> class with _get_state() and the classmethod _from_state(state)


class ModelFileError(ValueError):
    """The file is not a fastmlp model this version can load (with the reason)."""


def register(kind: str, cls: type) -> None:
    """Map the file kind ``kind`` to ``cls``, which has ``_get_state()`` and the classmethod
    ``_from_state(state)``.  The model modules register their classes when imported."""
    _KINDS[kind] = cls


# ---------------------------------------------------------------------------------------------
# JSON
def _fastmlp_version():
    return __version__


def _jsonable(value, what):
    """Check that value is plain JSON; numpy scalars become Python ones, NaN/inf a tag."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, f"{what}[{k!r}]") for k, v in value.items()}
    raise ValueError(f"cannot save {what}: {type(value).__name__} is not a plain value")


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"]) if value["__float__"] in ("nan", "inf", "-inf") \
                else _bad(f"bad float {value['__float__']!r}")
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _bad(reason):
    raise ModelFileError(reason)


def _kind_of(obj):
    for cls in type(obj).__mro__:
        for kind, registered in _KINDS.items():
            if registered is cls:
                return kind
    raise TypeError(f"save() takes a fastmlp model ({', '.join(sorted(_KINDS))}), "
                    f"got {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------
# the file
def _digest(manifest_arrays, meta_without_digest):
    h = hashlib.sha256()
    h.update(json.dumps(meta_without_digest, sort_keys=True).encode())
    for name in sorted(manifest_arrays):
        a = manifest_arrays[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def save(obj: Any, path: PathLike, extra: Optional[dict[str, Any]] = None) -> None:
    """Write a fastmlp model to ``path`` atomically.

    Parameters
    ----------
    obj : MLP, MLPClassifier or MLPRegressor (any registered kind)
    path : str or path-like
        The file (``.npz``); a symlink is followed, a device or FIFO written into.
    extra : dict, optional
        JSON-able values stored alongside (read back by :func:`read_metadata`); the command
        line keeps its training history there.
    """
    kind = _kind_of(obj)
    state = obj._get_state()
    arrays = dict(state["arrays"])
    scaling = state.get("scaling") or {}
    for which, (mean, scale) in scaling.items():
        arrays[f"scaling/{which}_mean"], arrays[f"scaling/{which}_scale"] = mean, scale
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for k, a in arrays.items():
        if a.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"cannot save array {k} of dtype {a.dtype}")
    version = max(int(state.get("format_version", 1)), _SCALING_VERSION if scaling else 1)
    meta = {"format": FORMAT, "format_version": version,
            "fastmlp_version": _fastmlp_version(), "kind": kind,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "arrays": {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()},
            "model": _jsonable(state["model"], "the model's state"),
            "extra": _jsonable(extra or {}, "extra")}
    if scaling:
        meta["scaling"] = {which: True for which in scaling}
    meta["sha256"] = _digest(arrays, meta)
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    members: dict[str, Any] = {_META: blob, **arrays}
    atomic_write(path, lambda f: np.savez(f, **members))


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file through ``write(binary_file)`` so that a failure leaves nothing changed.

    A regular file (or a new one) is written to a temporary file beside it, fsynced and
    renamed over it; on any failure (Ctrl-C included) the temporary file is removed and the
    old file is untouched.  A symlink is followed: the file it points to is replaced, the link
    stays.  A device or FIFO (``/dev/null``, ``/dev/stdout``) is written into directly.  A new
    file gets the mode the umask gives; a replaced file keeps its mode.

    Parameters
    ----------
    path : str or path-like
    write : callable(file) -> None

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> atomic_write(path, lambda f: f.write(b"all or nothing"))
    >>> open(path, "rb").read()
    b'all or nothing'
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{path}: is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):  # a device, FIFO, socket
        try:
            with open(path, "wb") as f:
                write(f)
                f.flush()
        except OSError as exc:
            exc.filename = exc.filename or path  # say which file the error is about
            raise
        return
    target = os.path.realpath(path)  # a symlink (even a dangling one): its target
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{path}: directory {os.path.dirname(os.path.abspath(path))} "
                                f"does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp",
                               dir=directory)
    try:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and (exc.filename is None or exc.filename == tmp):
            exc.filename = path  # say which file the error is about, not the temporary one
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _read(path):
    """-> (meta, arrays) after every structural check; raises ModelFileError."""
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            avail = available_memory()
            if avail is not None and size > avail:
                raise ModelFileError(f"{path}: {size} bytes, more than the available memory")
            data = f.read()
        except OSError as exc:
            raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return _parse(data)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def _parse(data):
    if not data.startswith(b"PK"):
        _bad("not a fastmlp model (not an npz/zip file)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = {i.filename: i for i in zf.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        _bad(f"corrupted or truncated model file ({exc})")
    meta_info = infos.get(_META + ".npy")
    if meta_info is None:
        _bad("not a fastmlp model (no metadata)")
    if meta_info.file_size > _MAX_META_BYTES:
        _bad("metadata too large")

    def member(name, dtype, shape=None):
        """The array stored as ``name``: its .npy header must say exactly dtype and shape
        (shape None: any 1-D length up to the metadata's limit) and the data must be
        complete, checked before anything is allocated; the member is read, decompressed if
        it is, only up to the size the manifest implies (the zip's own size fields are
        claims like any other)."""
        info = infos[name + ".npy"]
        count = math.prod(shape) if shape is not None else min(_MAX_META_BYTES, len(data))
        limit = dtype.itemsize * count + _NPY_HEADER_MAX
        if info.file_size > limit:
            _bad(f"array {name!r} is larger than its manifest says (tampered or damaged)")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size > len(data):
            _bad(f"array {name!r} claims more bytes than the file has (tampered or damaged)")
        avail = available_memory()
        if avail is not None and info.file_size > avail:
            _bad(f"array {name!r} claims {info.file_size} bytes, more than the available "
                 f"memory")
        try:
            with zf.open(info) as fh:
                raw = fh.read(limit + 1)  # decompresses no further than that
                if len(raw) > limit:
                    _bad(f"array {name!r} is larger than its manifest says (tampered or "
                         f"damaged)")
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError,
                NotImplementedError) as exc:
            _bad(f"corrupted or truncated model file (array {name!r}: {exc})")
        except Exception as exc:  # zlib.error and the like: still a damaged file
            _bad(f"corrupted model file (array {name!r}: {type(exc).__name__}: {exc})")
        bio = io.BytesIO(raw)
        try:
            version = npformat.read_magic(bio)
            if version == (1, 0):
                hshape, fortran, hdtype = npformat.read_array_header_1_0(bio)
            elif version == (2, 0):
                hshape, fortran, hdtype = npformat.read_array_header_2_0(bio)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:
            _bad(f"corrupted array {name!r} ({exc})")
        if hdtype != dtype or fortran or (shape is None and len(hshape) != 1) or \
                (shape is not None and tuple(hshape) != shape):
            _bad(f"array {name!r} does not match the manifest (tampered or damaged)")
        count = math.prod(hshape)
        if len(raw) - bio.tell() != count * dtype.itemsize:
            _bad(f"array {name!r} is truncated or padded (tampered or damaged)")
        return np.frombuffer(raw, dtype=dtype, count=count, offset=bio.tell()) \
            .reshape(hshape).copy()

    blob = member(_META, np.dtype(np.uint8))
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        _bad(f"corrupted metadata ({exc})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _bad("not a fastmlp model (wrong format tag)")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _bad("bad format version")
    if version > FORMAT_VERSION:
        _bad(f"written by a newer fastmlp ({meta.get('fastmlp_version')!s}, file format "
             f"{version}); this fastmlp ({_fastmlp_version()}) reads format {FORMAT_VERSION} "
             f"and older: upgrade fastmlp to load it")
    if not isinstance(meta.get("kind"), str) or meta["kind"] not in _KINDS:
        _bad(f"unknown model kind {meta.get('kind')!r}")
    for key, types, what in (("created", str, "creation time"),
                             ("fastmlp_version", str, "fastmlp version"),
                             ("model", dict, "model description"), ("extra", dict, "extra")):
        if not isinstance(meta.get(key), types):
            _bad(f"bad or missing {what} ({key!r})")
    manifest = meta.get("arrays")
    if not isinstance(manifest, dict):
        _bad("bad array manifest")
    if set(infos) != {_META + ".npy"} | {k + ".npy" for k in manifest}:
        _bad("the file's arrays do not match its manifest (tampered or damaged)")
    specs = {}
    for name, spec in manifest.items():
        try:
            dt, shape = np.dtype(spec[0]), tuple(int(s) for s in spec[1])
            assert len(spec) == 2 and dt.kind in _ARRAY_KINDS and min(shape, default=0) >= 0
        except Exception:
            _bad(f"bad manifest entry for {name!r}")
        specs[name] = dt, shape
    _check_manifest_sizes(specs, meta, len(data))
    arrays = {}
    for name, (dt, shape) in specs.items():
        arrays[name] = member(name, dt, shape)
    digest = meta.pop("sha256", None)
    if digest != _digest(arrays, meta):
        _bad("checksum mismatch: the file was modified or damaged")
    meta["sha256"] = digest
    return _from_json(meta), arrays



def _network_params(meta):
    """Parameters of the network the metadata describes (MLP: ``layer_sizes``; an
    estimator: ``n_features_in_``, ``hidden_layer_sizes``, ``n_outputs_``), or None when it
    describes none (unfitted, or fields the model class will refuse)."""
    model = meta["model"]
    try:
        if meta["kind"] == "MLP":
            sizes = list(model["layer_sizes"])
        else:
            attrs, hidden = model["attrs"], model["params"]["hidden_layer_sizes"]
            hidden = list(hidden) if isinstance(hidden, list) else [hidden]
            sizes = [attrs["n_features_in_"], *hidden, attrs["n_outputs_"]]
    except (KeyError, TypeError):
        return None
    if len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                 for s in sizes):
        return None
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def _check_manifest_sizes(specs, meta, file_size):
    """Bound what the manifest claims before anything is read: fastmlp stores arrays
    uncompressed, so together they fit in the file; and no float array (weights, optimizer
    moments, scaling, labels) holds more values than the network the file describes has
    parameters.  A small file compressing a huge member is refused here, not after
    decompressing it."""
    total = 0
    n_params = _network_params(meta)
    for name, (dt, shape) in specs.items():
        count = math.prod(shape)
        nbytes = count * dt.itemsize
        total += nbytes
        if total > file_size:
            _bad(f"array {name!r} claims {nbytes} bytes, more than the file holds "
                 f"({file_size} bytes; fastmlp stores arrays uncompressed): tampered or "
                 f"damaged")
        if dt.kind == "f" and n_params is not None and count > n_params:
            _bad(f"array {name!r} claims {count} values, more than the {n_params} parameters "
                 f"of the network the file describes (tampered or damaged)")


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The file's JSON metadata, checked like :func:`load` (but no model is built).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
    """
    meta, _ = _read(path)
    return meta


def load_with_metadata(path: PathLike) -> tuple[Any, dict[str, Any]]:
    """Load a model and its file's metadata.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    model : MLP, MLPClassifier or MLPRegressor
    meta : dict
        The file's JSON metadata (``kind``, ``format_version``, ``created``, ``extra``, ...).

    Raises
    ------
    ModelFileError
        A missing, damaged, tampered, newer-format or otherwise unusable file.
    """
    meta, arrays = _read(path)
    arrays = dict(arrays)
    try:
        spec = meta.get("scaling")
        if spec is not None:
            if meta["format_version"] < _SCALING_VERSION:
                _bad("a scaling entry in a format-1 file")
            if not isinstance(spec, dict) or not spec or not set(spec) <= {"x", "y"} or \
                    not all(v is True for v in spec.values()):
                _bad("bad scaling description")
        scaling = {}
        for which in spec or ():
            mean = arrays.pop(f"scaling/{which}_mean", None)
            scale = arrays.pop(f"scaling/{which}_scale", None)
            if mean is None or scale is None:
                _bad(f"scaling arrays for {which!r} missing")
            scaling[which] = (mean, scale)
        stray = [k for k in arrays if k.startswith("scaling/")]
        if stray:
            _bad(f"unexpected arrays {sorted(stray)}")
        state = {"model": meta["model"], "arrays": arrays, "scaling": scaling,
                 "format_version": meta["format_version"]}
        try:
            obj = _KINDS[meta["kind"]]._from_state(state)
        except ModelFileError:
            raise
        except ValueError as exc:  # the class found a bad field
            _bad(str(exc))
    except ModelFileError as exc:
        raise ModelFileError(f"{os.fspath(path)}: {exc}") from None
    return obj, meta


def load(path: PathLike) -> Any:
    """Load a model written by :func:`save` (or ``model.save``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    MLP, MLPClassifier or MLPRegressor

    Raises
    ------
    ModelFileError
        (a ``ValueError``) for a missing, damaged, tampered or newer file, with the reason.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastmlp
    >>> X, Y = np.zeros((8, 2)), np.zeros((8, 1))
    >>> model = fastmlp.MLP([2, 3, 1], random_state=0).fit(X, Y, epochs=1, batch_size=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> model.save(path)
    >>> again = fastmlp.load(path)
    >>> again.layer_sizes, bool((again.predict(X) == model.predict(X)).all())
    ((2, 3, 1), True)
    """
    return load_with_metadata(path)[0]
