"""The README's Python blocks run as written."""
import pathlib
import re

import pytest


def test_readme_quick_start_runs():
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python block"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    r = namespace["r"]
    assert r.samples["theta"].shape == (1, 20000, 8)
    assert r.log_evidence is not None and abs(r.log_evidence) < 1e3


@pytest.mark.timeout(300)
def test_readme_checkpoint_example_runs(tmp_path, monkeypatch):
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "checkpoint=" in b]
    assert blocks, "README has no checkpoint example"
    monkeypatch.chdir(tmp_path)  # the example writes runs/normal here
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    r = namespace["r"]
    assert r.samples["mu"].shape == (4, 800)
    assert (tmp_path / "runs" / "normal" / "draws.nc").exists()
