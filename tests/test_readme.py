"""The README's quick start runs as written."""
import pathlib
import re


def test_readme_quick_start_runs():
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python block"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    r = namespace["r"]
    assert r.samples["theta"].shape == (1, 20000, 8)
    assert r.log_evidence is not None and abs(r.log_evidence) < 1e3
