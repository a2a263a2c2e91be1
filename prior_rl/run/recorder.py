"""What a run reports: metric rows (history, ``metrics.csv``, TensorBoard), the progress bar, the statistics of
recent training episodes, this run's LLM calls, and the success plot at the end."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from prior_rl.io.logs import RunLogger, plot_curves
from prior_rl.run.models import LLMCounter

RECENT_EPISODES = 20  # train_success / train_return average the last this many finished training episodes


class Recorder:
    """Logger, progress bar, episode statistics and LLM-call counts of one run (online or offline)."""

    def __init__(self, config: Any, prior: Any = None, on_log: Optional[Callable[[dict], None]] = None):
        self.config, self.on_log = config, on_log
        self.run_dir = Path(config.run_dir) if config.run_dir else None
        self.logger = RunLogger(self.run_dir, config.tensorboard, resume=config.resume) if self.run_dir else None
        if self.run_dir:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(config.to_json(), indent=2))
        self.history: list[dict[str, Any]] = []
        self.recent: deque = deque(maxlen=RECENT_EPISODES)  # (success, return) of finished training episodes
        self.llm_counts = LLMCounter(prior)
        self.t0 = time.perf_counter()
        self.bar = None
        if config.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=config.budget, desc=f"{config.algo} {config.env}", unit="step", leave=False)

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.t0

    def episode_done(self, success: bool, ret: float) -> None:
        self.recent.append((float(success), float(ret)))

    def log(self, row: dict[str, Any]) -> None:
        """Complete ``row`` (training-episode statistics, LLM counts, wall time) and write it everywhere."""
        if self.recent:
            row.setdefault("train_success", float(np.mean([s for s, _ in self.recent])))
            row.setdefault("train_return", float(np.mean([r for _, r in self.recent])))
        row.update(self.llm_counts())
        row["wall_s"] = self.wall_s
        row["env_steps_per_s"] = row["env_steps"] / max(row["wall_s"], 1e-9)
        self.history.append(row)
        if self.logger:
            self.logger.log(row)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{row[k]:.2f}" for k in ("eval_success", "train_success", "loss") if k in row})
        if self.on_log:
            self.on_log(row)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    # -- resume -----------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The JSON a checkpoint keeps: logged rows, recent episodes, LLM-count offsets."""
        return {"history": self.history, "recent": [list(x) for x in self.recent], "llm_start": self.llm_counts.state()}

    def restore(self, state: dict[str, Any], position: int) -> None:
        """Continue from a checkpoint taken at ``position`` (env samples online, updates offline)."""
        self.history = list(state["history"])
        self.recent = deque((tuple(x) for x in state["recent"]), maxlen=RECENT_EPISODES)
        self.llm_counts.restore(state["llm_start"])
        if self.logger:
            self.logger.keep_rows(len(self.history))
        self.advance(position)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.logger:
            self.logger.close()
        rows = [r for r in self.history if "eval_success" in r]
        if self.run_dir and self.config.plot and rows:
            plot_curves(
                {self.config.algo: [(r["env_steps"], r["eval_success"], 0.0) for r in rows]},
                self.run_dir / "success.png",
                title=f"{self.config.algo} on {self.config.env} (seed {self.config.seed})",
            )
