"""Offline training (kept as the documented entry point): ``train_offline(OfflineConfig(...)) -> TrainResult``.

The loop lives in :mod:`prior_rl.run.offline_loop`.
"""

from prior_rl.run.config import OFFLINE_ALGOS, OfflineConfig  # noqa: F401  (re-exported names)
from prior_rl.run.offline_loop import convert, load_dataset, observations_from_records, train_offline  # noqa: F401

__all__ = ["OFFLINE_ALGOS", "OfflineConfig", "convert", "load_dataset", "observations_from_records", "train_offline"]
