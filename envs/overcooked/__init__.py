"""Text Overcooked (TWOSOME's single-agent map "A"), reproduced exactly from ``docs/overcooked-frozenlake.md``.

Environments (``envs.make`` names): ``overcooked-tomato-salad`` (:class:`TomatoSalad`, task 0, 5 macros),
``overcooked-tomato-lettuce-salad`` (:class:`TomatoLettuceSalad`, task 3, 8 macros) and
``overcooked-tomato-lettuce-onion-salad`` (:class:`TomatoLettuceOnionSalad`, task 6, 8 macros). Options:
``max_steps`` (the cap on macro steps; the scripts' caps: 31 for task 0, 51 for task 3; default None) and
``horizon`` (200).

Layers, each usable on its own:

* :mod:`.core` — the pure dynamics: ``step_state(state, action) -> (next_state, reward, done, prim_steps)`` on an
  immutable :class:`OvercookedState`, ``observation_vector`` (§6); every (world, action) is simulated once at the
  primitive level (§4–§5) and cached;
* :mod:`.text` — ``obs2text`` word for word (§10), the RL-LLM-Prior instruction, action prompt and ``extract_obs``;
* :mod:`.expert` — the fewest-primitive-step plan from any state (Dijkstra, memoised);
* :mod:`.env` — the :class:`envs.base.TextEnv` classes.

``info`` (reset and step): ``success`` (a correct delivery happened in this macro), ``prim_steps`` (this macro's
primitive steps; 0 at reset), ``env_step`` (the primitive-step clock), ``obs_vector`` (list[int], §6), ``macro``
(the reference macro name; None at reset), ``world`` (the true state tuple, golden ``state`` layout),
``twosome_reward`` / ``twosome_return`` (this macro's / the episode's Σ_t 0.99^t r_t over primitive steps).
``terminated`` = correct delivery or the 200-primitive-step horizon (treated as terminal, §7);
``truncated`` = the macro cap only.

Golden states: ``env.set_state(row["state"])`` starts an episode from any true state (the clock at 0, as in the
golden files); ``env.state`` returns it.

Deviations from the reference, on purpose:

* Task 6 has no text rendering in either reference repository. It uses task 3's rendering with the goal sentence
  "To serve the dish of a bowl only containing chopped tomato, lettuce and onion, you should first", the
  instruction "Your task is to serve the dish of a bowl only containing chopped tomato, lettuce and onion." and the
  task-3 action prompt with the same food list.
* Reset ignores ``seed`` (the reference map and start are fixed); stepping after the episode ended raises
  :class:`envs.base.EpisodeFinishedError` instead of continuing (TWOSOME's vector env auto-resets).
* The reference's belief state and its out-of-view chop-count decay are not modelled: in map "A" beliefs always
  equal the truth, and the remembered chop value never affects dynamics or text (§3).
"""

from envs.overcooked.core import HORIZON, TASKS, OvercookedState, initial_state, observation_vector, step_state
from envs.overcooked.env import OvercookedEnv, TomatoLettuceOnionSalad, TomatoLettuceSalad, TomatoSalad
from envs.overcooked.expert import Plan, expert_action, plan
from envs.overcooked.text import action_prompt, extract_obs, instruction, obs2text

__all__ = [
    "HORIZON",
    "TASKS",
    "OvercookedEnv",
    "OvercookedState",
    "Plan",
    "TomatoLettuceOnionSalad",
    "TomatoLettuceSalad",
    "TomatoSalad",
    "action_prompt",
    "expert_action",
    "extract_obs",
    "initial_state",
    "instruction",
    "obs2text",
    "observation_vector",
    "plan",
    "step_state",
]
