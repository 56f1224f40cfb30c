"""The README's shell examples run as written, in order, on the demo, in a scratch folder.

Blocks preceded by `<!-- not run by the README test: reason -->` are left out (the two make
commands, which CI runs; the vLLM example; the benchmarks). Commands run with this checkout's
package first on the path and its environment's `vidcorpus` and `python`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- not run by the README test:[^>]*-->\n)?```bash\n(.*?)```", re.DOTALL)


def readme_blocks() -> list[str]:
    return [body for skip, body in BLOCK.findall((REPO / "README.md").read_text()) if not skip]


def test_the_readme_runs_its_examples_on_the_demo_and_marks_the_others():
    blocks = readme_blocks()
    assert sum("demo/" in b for b in blocks) >= 2
    assert all("make " not in b and "vllm serve" not in b for b in blocks)


@pytest.mark.slow
def test_readme_shell_blocks_run_on_the_demo(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    env.pop("HF_TOKEN", None)
    script = "set -euo pipefail\nvidcorpus demo --output demo -q\n" + "\n".join(readme_blocks())  # = make demo
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "demo/corpus: valid" in done.stdout and "would publish" in done.stdout
    assert "niah_multi" in done.stdout and "order_clips" in done.stdout  # every code-made task kind shows
    assert (tmp_path / "my-corpus" / "street" / "1.1.0" / "manifest.json").exists()
