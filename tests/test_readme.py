"""Every Python block in README.md runs as written (each in a fresh namespace, from the project root)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, monkeypatch):
    monkeypatch.chdir(README.parent)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_ci_runs_the_test_commands_of_the_set_up_section():
    """.ci/run calls exactly the pytest commands README's "Set up" gives a newcomer, and fails if any group fails."""
    set_up = re.search(r"^## Set up\n\n```bash\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL).group(1)
    commands = [line.split("#")[0].strip() for line in set_up.splitlines() if "pytest" in line.split("#")[0]]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands and [line.strip().removeprefix("run_group ") for line in ci.splitlines()
                         if line.strip().startswith("run_group python")] == commands
