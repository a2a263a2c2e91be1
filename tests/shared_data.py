"""Where the tests find data that the repository does not ship (see NOTICE and docs/README.md).

* :func:`golden_dir` — the golden Overcooked transitions (docs/overcooked-frozenlake.md §14), recorded from
  TWOSOME's non-commercial environment: ``$PRIOR_RL_GOLDEN_DIR``, else ``<repo>/../shared/overcooked_golden``.
* :func:`reference_dir` — the paper's offline Tomato-Lettuce dataset (docs/method.md §3.11), which its reference
  repository ships without a licence: ``$PRIOR_RL_REFERENCE_DIR``, else ``<repo>/../shared/reference_offline``.

Each returns the folder as a :class:`~pathlib.Path` when it holds the expected files, and otherwise skips the
calling test (or, when called at import time, the whole module) with a one-line reason naming both places.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

GOLDEN_ENV = "PRIOR_RL_GOLDEN_DIR"
GOLDEN_DEFAULT = REPO_ROOT.parent / "shared" / "overcooked_golden"
GOLDEN_FILES = ("tomato_salad_transitions.jsonl.gz", "tomato_lettuce_salad_transitions.jsonl.gz")

REFERENCE_ENV = "PRIOR_RL_REFERENCE_DIR"
REFERENCE_DEFAULT = REPO_ROOT.parent / "shared" / "reference_offline"
REFERENCE_FILES = ("tomato_lettuce_salad_reference.jsonl.gz",)


def _resolve(env: str, default: Path, files: tuple[str, ...], what: str) -> Path:
    raw = os.environ.get(env, "").strip()
    path = Path(raw).expanduser() if raw else default
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        source = f"${env}={raw}" if raw else f"${env} unset, default {default}"
        pytest.skip(
            f"{what} not found ({missing[0]} missing in {path}; {source}): set ${env} to the folder "
            f"holding them, or place them in {default}",
            allow_module_level=True,
        )
    return path


def golden_dir(*files: str) -> Path:
    """The folder of the golden Overcooked transitions (by default both task files must be present)."""
    return _resolve(GOLDEN_ENV, GOLDEN_DEFAULT, files or GOLDEN_FILES, "golden Overcooked transitions")


def reference_dir(*files: str) -> Path:
    """The folder of the paper's offline dataset (by default its JSON-lines conversion must be present)."""
    return _resolve(REFERENCE_ENV, REFERENCE_DEFAULT, files or REFERENCE_FILES, "reference offline dataset")
