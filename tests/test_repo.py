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
