"""Every ```python block of README.md and of the pages in docs/ runs as written.

The blocks are found when the tests are collected, so a section or page added later is tested
too; each runs on its own (a fresh namespace, a temporary working directory), as a reader
would paste it.  A block that needs an optional extra which is not installed is skipped,
saying which one.  A python block indented under a list item would escape this collection,
so none may be indented."""
import glob
import os
import re
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
OPTIONAL = {"torch", "dask", "distributed", "skl2onnx", "onnx", "onnxruntime", "pyarrow",
            "matplotlib", "asv", "rich"}
# The README's test command, which CI (.ci/run) runs exactly.
TEST_COMMAND = 'python -m pip install -e ".[test]" && python -m pytest -q'


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _blocks(path):
    """[(id, code)] of a page's python blocks, each named after its page and section."""
    page = os.path.splitext(os.path.basename(path))[0].lower()
    blocks, section, counts = [], "top", {}
    for m in re.finditer(r"^(#{2,4}) ([^\n]+)$|^```python\n(.*?)^```$", _read(path),
                         re.M | re.S):
        if m.group(2):
            section = re.sub(r"[^a-z0-9]+", "-", m.group(2).lower()).strip("-")
        else:
            key = f"{page}-{section}"
            counts[key] = counts.get(key, 0) + 1
            blocks.append((f"{key}-{counts[key]}", m.group(3)))
    return blocks


README_BLOCKS = _blocks(README)
BLOCKS = README_BLOCKS + [b for page in DOCS for b in _blocks(page)]


def test_the_readme_has_python_examples():
    assert len(README_BLOCKS) >= 3
    assert any(code.count("fastmlp.MLP(") for _, code in README_BLOCKS)


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[i for i, _ in BLOCKS])
def test_example_runs_as_written(code, tmp_path, monkeypatch):
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
    code = [c for _, c in README_BLOCKS if "fastmlp.MLP(" in c and "load_digits" in c]
    assert code, "the README's Use example (an MLP on digits) is missing"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "use.py").write_text(code[0])
    g = runpy.run_path(str(tmp_path / "use.py"))
    assert (g["out"].argmax(1) == g["y"]).mean() > 0.9
    assert (g["again"].predict(g["X"]) == g["out"]).all()


@pytest.mark.parametrize("path", [README] + DOCS, ids=os.path.basename)
def test_no_python_block_escapes_the_tests(path):
    """A fenced python block not at the start of its line (indented under a list item) is
    not collected above, so it would never run."""
    for number, line in enumerate(_read(path).splitlines(), 1):
        if line.lstrip().startswith("```python"):
            assert line.startswith("```python"), f"{os.path.basename(path)}:{number}: indented"


def test_the_readme_is_a_front_page():
    """At most ~250 lines, every docs/ page linked from it, every link to docs/ resolving."""
    text = _read(README)
    assert len(text.splitlines()) <= 260
    assert DOCS, "docs/ has no pages"
    linked = set(re.findall(r"\]\((docs/[^)#]+)", text))
    for path in linked:
        assert os.path.isfile(os.path.join(ROOT, path)), f"README links to missing {path}"
    assert {os.path.relpath(p, ROOT) for p in DOCS} <= linked


@pytest.mark.parametrize("path", DOCS, ids=os.path.basename)
def test_docs_links_resolve(path):
    for target in re.findall(r"\]\(([^)#:]+\.md)", _read(path)):
        assert os.path.isfile(os.path.join(os.path.dirname(path), target)), \
            f"{os.path.basename(path)} links to missing {target}"


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in _read(README)
    assert TEST_COMMAND in _read(os.path.join(ROOT, ".ci", "run")).splitlines()


def test_the_docs_list_every_activation():
    """The command line's page lists --activation's choices from fastmlp._validation's one
    list (a new activation shows up here as a failing test until the page names it)."""
    from fastmlp._validation import ACTIVATIONS
    text = _read(os.path.join(ROOT, "docs", "command-line.md"))
    m = re.search(r"`--activation\s+([a-z_|]+)`", text)
    assert m, "docs/command-line.md does not spell out --activation's choices"
    assert m.group(1).split("|") == list(ACTIVATIONS)
