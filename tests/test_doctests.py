"""The Examples sections of the docstrings run, as doctests.

Every module of the ``fastmlp`` package (and of its kernels) is listed without importing it
(pkgutil), then imported and doctested inside its own test, so that collecting this file
never imports an optional extra (PyTorch, Dask, skl2onnx, ...).  A module that needs an
extra which is not installed is skipped, saying which one.
"""
import doctest
import importlib
import os
import pkgutil

import pytest

import fastmlp

# the extras a module may need (pyproject's optional dependencies and the benchmark peers)
OPTIONAL = {"torch", "dask", "distributed", "skl2onnx", "onnx", "onnxruntime", "pandas",
            "pyarrow", "matplotlib", "asv", "tqdm"}
# modules whose public functions must carry examples
DOCUMENTED = {"fastmlp.backend", "fastmlp.model", "fastmlp.optimizers", "fastmlp._validation"}


def _modules():
    names = ["fastmlp"]

    def listed(prefix, path):  # subpackages (fastmlp.cli, ...) too, still without importing
        for m in pkgutil.iter_modules(path):
            names.append(f"{prefix}.{m.name}")
            if m.ispkg:
                listed(f"{prefix}.{m.name}", [os.path.join(p, m.name) for p in path])

    for package in (fastmlp, importlib.import_module("fastmlp.kernels")):
        listed(package.__name__, list(package.__path__))
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional {exc.name!r}, which is not installed")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
    if name in DOCUMENTED:
        assert result.attempted > 0, f"{name} has no examples"


def test_the_documented_modules_exist():
    assert DOCUMENTED <= set(_modules())
