"""The ALFWorld / TextWorld engine imports, in one place, with their side effects tamed.

Importing ``alfworld`` runs ``alfworld.info``, which creates ``$ALFWORLD_DATA`` (default ``~/.cache/alfworld``)
and exports ``ALFWORLD_DATA`` into ``os.environ``. That would make every later process look as if a real dataset
had been configured, so the variable is pointed at the temp dir for the import and restored afterwards.
"""

from __future__ import annotations

import os
import tempfile
from importlib import metadata

# Exact versions whose internals this package relies on (the parsing cache patches textworld 1.7.0 privates;
# the generator reads alfworld 0.4.2's tables and floor plans).
PINNED = {
    "alfworld": "0.4.2",
    "textworld": "1.7.0",
    "jericho": "3.3.1",
    "fast-downward-textworld": "20.6.4",
    "tatsu": "5.8.3",
}
INSTALL_HINT = (
    "pip install --no-deps alfworld==0.4.2 textworld==1.7.0 jericho==3.3.1 fast-downward-textworld==20.6.4 "
    "tatsu==5.8.3 numpy networkx tqdm termcolor prompt_toolkit wcwidth mementos hashids more_itertools "
    "(see envs/alfworld/README.md; jericho and fast-downward compile on install and need gcc, g++, make)"
)

_previous = os.environ.get("ALFWORLD_DATA")
os.environ["ALFWORLD_DATA"] = tempfile.gettempdir()  # alfworld.info mkdirs it: the temp dir already exists
try:
    import fast_downward
    import textworld
    import textworld.envs.pddl.logic as tw_pddl_logic
    import textworld.envs.pddl.textgen as tw_textgen
    import textworld.logic as tw_logic
    from alfworld import info as alfworld_info
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    from alfworld.agents.utils.misc import add_task_to_grammar
    from alfworld.gen import constants as alfworld_constants
    from alfworld.gen import goal_library as alfworld_goals
    from textworld.envs import PddlEnv
except ImportError as exc:  # pragma: no cover - exercised only where the engine is missing
    raise ImportError(f"alfworld-pick needs the ALFWorld text engine ({exc}); install it with: {INSTALL_HINT}") from exc
finally:
    if _previous is None:
        os.environ.pop("ALFWORLD_DATA", None)
    else:
        os.environ["ALFWORLD_DATA"] = _previous

ALFRED_PDDL_PATH: str = alfworld_info.ALFRED_PDDL_PATH
ALFRED_TWL2_PATH: str = alfworld_info.ALFRED_TWL2_PATH
LAYOUTS_DIR: str = os.path.join(os.path.dirname(alfworld_constants.__file__), "layouts")


def installed_versions() -> dict[str, str | None]:
    """Installed version of every pinned distribution (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in PINNED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


__all__ = [
    "ALFRED_PDDL_PATH",
    "ALFRED_TWL2_PATH",
    "AlfredDemangler",
    "AlfredInfos",
    "INSTALL_HINT",
    "LAYOUTS_DIR",
    "PINNED",
    "PddlEnv",
    "add_task_to_grammar",
    "alfworld_constants",
    "alfworld_goals",
    "fast_downward",
    "installed_versions",
    "textworld",
    "tw_logic",
    "tw_pddl_logic",
    "tw_textgen",
]
