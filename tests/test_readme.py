"""Every Python block in README.md and docs/*.md runs as written (each in a fresh namespace, from the project root)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, number, code) for page in PAGES
          for number, code in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL))]


def test_the_readme_and_the_docs_have_python_blocks():
    assert sum(page.name == "README.md" for page, _, _ in BLOCKS) >= 1 and len(BLOCKS) >= 3


def test_every_link_to_a_file_of_the_project_leads_to_one():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("page,number,code", BLOCKS, ids=[f"{page.name}-block{number}" for page, number, _ in BLOCKS])
def test_python_block_runs(page, number, code, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(code, str(page), "exec"), {"__name__": "__readme__"})


def test_ci_runs_the_test_commands_of_the_set_up_section():
    """.ci/run calls exactly the pytest commands README's "Set up" gives a newcomer, and fails if any group fails."""
    set_up = re.search(r"^## Set up\n\n```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL).group(1)
    commands = [line.split("#")[0].strip() for line in set_up.splitlines() if "pytest" in line.split("#")[0]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands and [line.strip().removeprefix("run_group ") for line in ci.splitlines()
                         if line.strip().startswith("run_group python")] == commands
