"""Prompt construction per environment family (exact strings, from docs/method.md §3.3) and chat wrapping."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer as Backend
from tokenizers import models

from envs.base import TextObservation
from prior_rl.llm.tokenizer import Tokenizer
from prior_rl.prior.prompts import PromptBuilder, alfworld_prompt, generic_prompt, overcooked_prompt

AP = (
    "To serve the dish of a bowl containing only chopped tomatoes, what action should you take next? Based on "
    "your previous observations and actions, please select only one action for the next step from the "
    "admissible actions: {}. Action:"
)
INSTRUCTION = "Your task is to serve the dish of a bowl only containing chopped tomato."
ACTIONS = ("pick up the tomato", "take the bowl", "walk to the cutting board", "serve nothing", "chop nothing")
STATE = (
    "There is a fixed cutting board in the room. You notice a tomato and a bowl on the different tables. "
    "Currently you don't have anything in hand."
)


def overcooked_obs(**fields) -> TextObservation:
    return TextObservation(
        prompt=STATE + " To serve the dish of a bowl only containing chopped tomato, you should first",
        actions=ACTIONS,
        task=INSTRUCTION,
        state=STATE,
        family="overcooked",
        action_prompt=AP,
        **fields,
    )


def test_overcooked_first_step_matches_reference_template():
    expected = (
        INSTRUCTION
        + "\nHistory:\n"
        + ""
        + "\nCurrent Observation: "
        + STATE
        + "\n"
        + AP.format(
            "['pick up the tomato', 'take the bowl', 'walk to the cutting board', 'serve nothing', 'chop nothing']"
        )
    )
    assert overcooked_prompt(overcooked_obs()) == expected
    assert PromptBuilder()(overcooked_obs()) == expected  # "auto" picks the family from obs.family


def test_overcooked_history():
    hist = [("s1", "a1"), ("s2", "a2"), "Observation: s3. Action: a3."]
    o = overcooked_obs(history=hist)
    text = overcooked_prompt(o)
    assert (
        "\nHistory:\nObservation: s1. Action: a1.\nObservation: s2. Action: a2.\nObservation: s3. Action: a3."
        "\nCurrent Observation: " in text
    )
    last = PromptBuilder(history_len=1)(o)
    assert "\nHistory:\nObservation: s3. Action: a3.\nCurrent Observation: " in last
    assert "s1" not in last
    none = PromptBuilder(history_len=0)(o)
    assert "\nHistory:\n\nCurrent Observation: " in none
    assert overcooked_prompt(o, history=[("x", "y")]).count("Observation: x. Action: y.") == 1


def test_overcooked_needs_action_prompt():
    o = TextObservation(prompt="p", actions=ACTIONS, task=INSTRUCTION, state=STATE, family="overcooked")
    with pytest.raises(ValueError, match=r"action_prompt.*family 'overcooked'"):
        PromptBuilder()(o)


def test_alfworld_matches_reference_prompt():
    task = "put some cellphone on armchair."
    state = "You arrive at desk 1. On the desk 1, you see a cellphone 1"
    actions = ("go to armchair 1", "take cellphone 1 from desk 1")
    llf = f"{state}. You are allowed to take the following actions: {', '.join(actions)}."
    # The string the reference builds (and envs/alfworld writes as obs.prompt).
    reference = (
        f"Task: Your task is to: {task}\nCurrent observation:{llf}\n"
        "Please select an action from the admissible actions. \n Action:"
    )
    o = TextObservation(
        prompt=reference, actions=actions, task=task, state=state, family="alfworld", llf_observation=llf
    )
    assert alfworld_prompt(o) == reference
    assert PromptBuilder()(o) == reference
    o2 = TextObservation(prompt="", actions=actions, task="Your task is to: " + task, state=llf, family="alfworld")
    assert alfworld_prompt(o2) == reference  # no double "Your task is to"


def test_generic_is_the_env_prompt():
    from envs.frozen_lake import FrozenLake

    o, _ = FrozenLake().reset(seed=0)
    assert generic_prompt(o) == o.prompt == PromptBuilder()(o)
    assert PromptBuilder(style="generic")(overcooked_obs()) == overcooked_obs().prompt  # explicit style wins


def test_chat_wrapping_and_errors():
    tok = Tokenizer(
        Backend(models.BPE()),
        source="test",
        bos_token="<s>",
        eos_token="</s>",
        chat_template="{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}"
        "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
    )
    o = overcooked_obs()
    chat = PromptBuilder(chat=True, tokenizer=tok)
    assert chat(o) == "[user]" + PromptBuilder()(o) + "</s>[assistant]"
    assert chat.action_prefix == "" and PromptBuilder().action_prefix == " "
    sys = PromptBuilder(chat=True, tokenizer=tok, system="Be brief.")(o)
    assert sys.startswith("[system]Be brief.</s>[user]")
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        PromptBuilder(chat=True)(o)
    with pytest.raises(ValueError, match="unknown prompt style"):
        PromptBuilder(style="minecraft")
    no_template = Tokenizer(Backend(models.BPE()), source="x.json")
    with pytest.raises(ValueError, match="no chat template"):
        PromptBuilder(chat=True, tokenizer=no_template)(o)


def test_real_envs_agree_with_the_builders():
    """The ALFWorld env writes the reference prompt itself; our builder reproduces it from the fields. The
    Overcooked env supplies what the reference template needs."""
    import envs

    try:
        env = envs.make("alfworld-pick")
        o, _ = env.reset(seed=0)
    except Exception as e:  # game data cannot be generated here
        pytest.skip(f"alfworld-pick unavailable: {e}")
    for _ in range(3):
        assert PromptBuilder()(o) == o.prompt
        o, *_ = env.step(0)
    o, _ = envs.make("overcooked-tomato-salad").reset()
    text = PromptBuilder()(o)
    assert text.startswith(INSTRUCTION + "\nHistory:\n\nCurrent Observation: " + o.state + "\n")
    assert text.endswith(AP.format(str(list(o.actions))))
