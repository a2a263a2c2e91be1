"""Environments for a run: one constructor for training copies and evaluation, with the run's step cap."""

from __future__ import annotations

import functools
from typing import Any

import envs


def make_env(config: Any, **extra: Any) -> envs.TextEnv:
    """``envs.make(config.env, max_steps=<the run's cap>, **config.env_options, **extra)``, with the history
    wrapper when ``config.history``, or the whole-episode transcript wrapper for ``prompt="transcript"``."""
    options = {"max_steps": config.episode_cap, **dict(config.env_options), **extra}
    env = envs.make(config.env, **options)
    if getattr(config, "prompt", None) == "transcript":
        from envs.history import WithTranscript

        env = WithTranscript(env)
    elif config.history:
        from envs.history import WithHistory

        env = WithHistory(env, config.history)
    return env


def make_vector_env(config: Any, group: Any = None) -> envs.VectorEnv:
    """The run's ``num_envs`` copies: stepped in this process, in ``config.env_workers`` worker processes
    (:class:`envs.workers.WorkerVectorEnv`), or split over the processes of ``group`` (a
    :class:`prior_rl.distributed.ProcessGroup` of several processes: :class:`envs.vector.SplitVectorEnv`); the
    same transitions every way, the engines stepping at the same time."""
    workers = getattr(config, "env_workers", 0)
    if group is not None and group.size > 1:
        from envs.vector import SplitVectorEnv

        if workers:
            raise ValueError("--env-workers and a run across processes both split the copies; use one of them")
        return SplitVectorEnv(functools.partial(make_env, config), config.num_envs, group)
    if workers:
        from envs.workers import WorkerVectorEnv

        return WorkerVectorEnv(functools.partial(make_env, config), config.num_envs, min(workers, config.num_envs))
    return envs.VectorEnv(lambda: make_env(config), config.num_envs)
