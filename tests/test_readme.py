"""Every ```python block of README.md runs as written.

The blocks are found when the tests are collected, so a section added later is tested too;
each runs on its own (a fresh namespace, a temporary working directory), as a reader would
paste it.  A block that needs an optional extra which is not installed is skipped, saying
which one."""
import os
import re
import runpy

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
OPTIONAL = {"torch", "dask", "distributed", "skl2onnx", "onnx", "onnxruntime", "pyarrow",
            "matplotlib", "asv"}


def _blocks():
    """[(id, code)] of the README's python blocks, each named after its section."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    blocks, section, counts = [], "top", {}
    for m in re.finditer(r"^(#{2,4}) ([^\n]+)$|^```python\n(.*?)^```$", text, re.M | re.S):
        if m.group(2):
            section = re.sub(r"[^a-z0-9]+", "-", m.group(2).lower()).strip("-")
        else:
            counts[section] = counts.get(section, 0) + 1
            blocks.append((f"{section}-{counts[section]}", m.group(3)))
    return blocks


BLOCKS = _blocks()


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 3
    assert any(code.count("fastmlp.MLP(") for _, code in BLOCKS)


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[i for i, _ in BLOCKS])
def test_readme_example_runs_as_written(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "snippet.py"
    path.write_text(code)
    try:
        runpy.run_path(str(path), run_name="__main__")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"needs the optional {exc.name!r}, which is not installed")
        raise


def test_the_use_example_learns(tmp_path, monkeypatch):
    """The MLP example trains on digits with settings that learn (not 10% accuracy)."""
    code = [c for _, c in BLOCKS if "fastmlp.MLP(" in c and "load_digits" in c]
    assert code, "the README's Use example (an MLP on digits) is missing"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "use.py").write_text(code[0])
    g = runpy.run_path(str(tmp_path / "use.py"))
    assert (g["out"].argmax(1) == g["y"]).mean() > 0.9
    assert (g["again"].predict(g["X"]) == g["out"]).all()
