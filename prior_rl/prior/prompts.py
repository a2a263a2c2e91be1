"""Prompts for the LLM action prior, per environment family, in one place.

The prior scores (or generates) an action as a continuation of a prompt built from a
:class:`envs.base.TextObservation`, from its typed fields. ``obs.family`` selects the template:

* ``"overcooked"``: the reference implementation's template (docs/method.md §3.3)::

      {instruction}\\nHistory:\\n{history}\\nCurrent Observation: {state}\\n{action_prompt.format(list repr)}

  ``instruction`` is ``obs.instruction`` if set, else ``obs.task``; ``action_prompt`` is ``obs.action_prompt``
  (required: a missing one raises ``ValueError``; its ``{}`` receives Python's list repr of the actions); ``state``
  is ``obs.state``. The history is the last ``history_len`` entries (default: all given) of ``obs.history``: items
  are ``(state, action)`` pairs, rendered ``"Observation: {s}. Action: {a}."``, or already rendered strings; the
  lines are joined by ``"\\n"`` (empty at the first step).
* ``"alfworld"``: ``"Task: Your task is to: " + obs.task + "\\nCurrent observation:" + llf +
  "\\nPlease select an action from the admissible actions. \\n Action:"`` (the reference's prompt, verbatim), where
  ``llf`` is ``obs.llf_observation`` (LLF-Bench's observation, which ends with the admissible-action list;
  ``obs.state`` if None). The ``"Your task is to: "`` prefix is added only if ``obs.task`` lacks it.
* anything else (Frozen Lake, …): ``obs.prompt`` as the environment wrote it.

Candidates are scored as the continuation ``action_prefix + action``: ``" "`` after a raw prompt (which ends in
"Action:"), ``""`` after a chat-template prompt (the assistant turn starts on a fresh line). With ``chat=True`` the
raw prompt becomes the user message of the model's chat template (optionally after a ``system`` message), with the
generation prompt appended; use it with instruct models. The reference used raw prompts with a base model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envs.base import TextObservation
from prior_rl.llm.tokenizer import Tokenizer

ALFWORLD_SUFFIX = "Please select an action from the admissible actions. \n Action:"
FAMILIES = ("overcooked", "alfworld", "generic")


def _history_lines(history: Sequence[Any], history_len: int | None) -> list[str]:
    items = list(history)
    if history_len is not None:
        items = items[-history_len:] if history_len > 0 else []
    lines = []
    for item in items:
        if isinstance(item, str):
            lines.append(item)
        else:
            state, action = item
            lines.append(f"Observation: {state}. Action: {action}.")
    return lines


def overcooked_prompt(
    obs: TextObservation, history: Sequence[Any] | None = None, history_len: int | None = None
) -> str:
    """The reference Overcooked prior prompt. ``history`` overrides ``obs.history``."""
    template = obs.action_prompt
    if not isinstance(template, str) or "{}" not in template:
        what = "has none" if template is None else f"has {template!r}, without the '{{}}'"
        raise ValueError(
            f"the overcooked prompt needs TextObservation.action_prompt (the action-prompt template with a '{{}}' "
            f"for the admissible-action list); this observation (family {obs.family!r}) {what}"
        )
    instruction = obs.instruction or obs.task
    hist = history if history is not None else obs.history
    lines = _history_lines(hist, history_len)
    state = obs.state or obs.prompt
    return (
        instruction
        + "\nHistory:\n"
        + "\n".join(lines)
        + "\nCurrent Observation: "
        + state
        + "\n"
        + template.format(str(list(obs.actions)))
    )


def alfworld_prompt(obs: TextObservation) -> str:
    """The reference ALFWorld prior prompt. The observation part is LLF-Bench's text, which still lists the
    admissible actions (``obs.llf_observation``; ``obs.state`` if None)."""
    task = obs.task if obs.task.startswith("Your task is to") else "Your task is to: " + obs.task
    state = obs.llf_observation or obs.state or obs.prompt
    return "Task: " + task + "\nCurrent observation:" + state + "\n" + ALFWORLD_SUFFIX


def generic_prompt(obs: TextObservation) -> str:
    """The environment's own prompt (Frozen Lake and any other family)."""
    return obs.prompt


def family_of(obs: TextObservation) -> str:
    """The prompt family of ``obs.family``: "overcooked", "alfworld", or "generic" for anything else."""
    return obs.family if obs.family in ("overcooked", "alfworld") else "generic"


@dataclass(frozen=True)
class PromptBuilder:
    """``builder(obs) -> prompt text``; ``builder.action_prefix`` is what precedes each candidate action.

    style:       "auto" (by ``obs.family``), "overcooked", "alfworld" or "generic".
    chat:        wrap the prompt as the user turn of the model's chat template (needs ``tokenizer``;
                 :class:`prior_rl.prior.ActionPrior` fills it in from the model).
    system:      optional system message for chat mode (None keeps the template's default).
    history_len: how many Overcooked history entries to keep (None = all that the observation carries;
                 the reference used 3 for Tomato Salad and 5 for the lettuce salad).
    """

    style: str = "auto"
    chat: bool = False
    system: str | None = None
    history_len: int | None = None
    tokenizer: Tokenizer | None = None

    def __post_init__(self) -> None:
        if self.style not in ("auto",) + FAMILIES:
            raise ValueError(f"unknown prompt style {self.style!r}; use 'auto', {', '.join(map(repr, FAMILIES))}")

    @property
    def action_prefix(self) -> str:
        return "" if self.chat else " "

    def raw(self, obs: TextObservation) -> str:
        style = family_of(obs) if self.style == "auto" else self.style
        if style == "overcooked":
            return overcooked_prompt(obs, history_len=self.history_len)
        if style == "alfworld":
            return alfworld_prompt(obs)
        return generic_prompt(obs)

    def __call__(self, obs: TextObservation) -> str:
        text = self.raw(obs)
        if not self.chat:
            return text
        if self.tokenizer is None:
            raise ValueError(
                "PromptBuilder(chat=True) needs the model's tokenizer (its chat template); pass tokenizer=llm.tokenizer"
            )
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": text}
        ]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
