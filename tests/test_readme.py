"""Every Python block in README.md and docs/*.md runs as written (each in a fresh namespace, from the project root)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, number, code) for page in PAGES
          for number, code in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL))]


def test_the_readme_has_python_blocks():
    assert sum(page.name == "README.md" for page, _, _ in BLOCKS) >= 2


@pytest.mark.parametrize("page,number,code", BLOCKS, ids=[f"{page.name}-block{number}" for page, number, _ in BLOCKS])
def test_python_block_runs(page, number, code, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(code, str(page), "exec"), {"__name__": "__readme__"})
