"""Repository invariants: CI runs the README's test command; nothing runs at import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", quick, flags=re.S)]


def test_quick_start_has_two_commands_and_ci_runs_the_test_command() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    install_and_run, install_and_test = commands
    assert "samkit segment" in install_and_run
    assert "pytest" in install_and_test
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines()


def test_constraints_pin_torch() -> None:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in [line.strip() for line in lines]


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, torch\n"
        "before = (torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled())\n"
        "import samkit\n"
        "after = (torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled())\n"
        "assert before == after, (before, after)\n"
        "assert 'torchvision' not in sys.modules and 'timm' not in sys.modules\n"
        "assert 'samkit.cli.main' not in sys.modules\n"
        "assert not any(m.startswith(('samkit.train', 'samkit.eval')) for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _imported_top_level_modules() -> set[str]:
    """Top-level names of every module imported anywhere under src/samkit (module level
    or inside functions)."""
    import ast

    names: set[str] = set()
    for path in (ROOT / "src" / "samkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_imported_package_is_a_declared_dependency() -> None:
    """The quick start installs samkit alone (no test extras): every third-party module
    samkit imports must come from a declared runtime dependency (or the video extra).
    `import click` in the CLI broke the quick start when typer stopped depending on
    click, and the test extras hid it."""
    import importlib.metadata as md

    text = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    blocks = [
        re.search(r"^dependencies = \[(.*?)\]", text, flags=re.S | re.M),
        re.search(r"^video = \[(.*?)\]", text, flags=re.S | re.M),
    ]
    assert all(blocks), "pyproject.toml: dependencies / video extra not found"
    declared = [d for b in blocks for d in re.findall(r'"([^"]+)"', b.group(1))]
    declared_names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in declared}
    distributions = md.packages_distributions()
    stdlib = sys.stdlib_module_names
    missing = {}
    for name in sorted(_imported_top_level_modules() - {"samkit", "__future__"}):
        if name in stdlib:
            continue
        dists = {d.lower() for d in distributions.get(name, [name])}
        if not dists & declared_names:
            missing[name] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject dependencies: {missing}"
