"""ALFWorld Pick & Place on the real text engine (alfworld 0.4.2 / textworld 1.7.0), offline.

``envs.make("alfworld-pick", split="train" | "unseen")``. See ``envs/alfworld/README.md`` for the install line,
the generated 28/26 split and the timings; ``env.py`` for the observation format.
"""

from envs.alfworld.env import AlfworldDataError, AlfworldPick, default_cache_dir, generated_root, read_game_file

__all__ = ["AlfworldDataError", "AlfworldPick", "default_cache_dir", "generated_root", "read_game_file"]
