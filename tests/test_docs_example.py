"""The documentation example runs as a script (it forces 2 CPU devices itself) and checks its own results."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "compose_dqn_prior.py"


def test_compose_dqn_prior_example_runs():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XLA_FLAGS", None)  # the script must set up its own devices
    env.pop("JAX_PLATFORMS", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "data-parallel over 2 devices" in proc.stdout, proc.stdout
    assert proc.stdout.strip().endswith("ok")
