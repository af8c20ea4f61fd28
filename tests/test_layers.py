"""The import arrows keep to the layers (read from the source, nothing imported): no module
imports the package face (``fastmlp/__init__.py``) -- the version lives in ``_version.py`` --
and the functional backend and its engine do not reach into the Trainer's module."""
import ast
import os

import fastmlp

PACKAGE = os.path.dirname(os.path.abspath(fastmlp.__file__))


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, PACKAGE), ast.parse(f.read())


def _imports(tree, package_depth):
    """(module, name) of every import, relative ones resolved against fastmlp."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = "fastmlp" if node.level == package_depth + 1 else None
                module = node.module if base is None else \
                    base if not node.module else f"{base}.{node.module}"
            else:
                module = node.module
            for alias in node.names:
                yield module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def test_no_module_imports_the_package_face():
    # the package's modules and subpackages, kernels/ and benchmarks/ (mapped in) included
    submodules = {os.path.splitext(n)[0] for n in os.listdir(PACKAGE)} | {"kernels", "bench"}
    for rel, tree in _modules():
        if os.path.basename(rel) == "__init__.py" and os.path.dirname(rel) == "":
            continue
        depth = rel.count(os.sep)
        for module, name in _imports(tree, depth):
            if module == "fastmlp" and name is not None:
                assert name in submodules, f"{rel} imports {name!r} from the package face"


def test_the_backend_does_not_import_the_trainer():
    for rel in ("backend.py", "_engine.py"):
        with open(os.path.join(PACKAGE, rel), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for module, _ in _imports(tree, 0):
            assert module != "fastmlp._core", f"{rel} imports fastmlp._core"


def test_the_package_is_typed():
    """PEP 561: ``py.typed`` marks the package's hints for its users' type checkers, and the
    install carries it (package-data)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import pytest
        tomllib = pytest.importorskip("tomli")
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))
    pyproject = os.path.join(os.path.dirname(PACKAGE), "pyproject.toml")
    with open(pyproject, "rb") as f:
        config = tomllib.load(f)
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["fastmlp"]
    assert config["tool"]["mypy"]["ignore_missing_imports"] is True


def test_the_public_api_has_type_hints():
    """Every public function and method (the estimators', the dask estimators', Engine's,
    MLP's, to_onnx, the package's functions) names the types of its parameters and result,
    so that users' type checkers see more than ``Any``."""
    import inspect

    import fastmlp.dask
    from fastmlp._engine import Engine

    def unannotated(func, name):
        sig = inspect.signature(func)
        gaps = [f"{name}({p.name})" for p in sig.parameters.values()
                if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if sig.return_annotation is inspect.Signature.empty:
            gaps.append(f"{name} -> ?")
        return gaps

    gaps = []
    for cls in (fastmlp.MLP, fastmlp.MLPClassifier, fastmlp.MLPRegressor,
                fastmlp.dask.MLPClassifier, fastmlp.dask.MLPRegressor, Engine):
        for name, member in vars(cls).items():
            if name != "__init__" and (name.startswith("_") or isinstance(member, property)):
                continue
            method = getattr(cls, name)
            if callable(method) and not inspect.isclass(method):
                gaps += unannotated(method, f"{cls.__module__}.{cls.__name__}.{name}")
    for func in (fastmlp.to_onnx, fastmlp.load, fastmlp.patch_sklearn, fastmlp.unpatch_sklearn):
        gaps += unannotated(func, func.__name__)
    assert not gaps, gaps
