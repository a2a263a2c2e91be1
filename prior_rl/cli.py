"""``prior-rl`` command line: train online, train offline, generate datasets.

    prior-rl train --env overcooked-tomato-salad --algo dqn-prior --llm smollm2 --env-steps 2000 --seed 0
    prior-rl train ... --run-dir runs/x --checkpoint-every 200 [--resume]
    prior-rl offline --algo cql-prior --dataset ../shared/reference_offline/tomato_lettuce_salad_reference.jsonl.gz
    prior-rl dataset --env overcooked-tomato-lettuce-salad --size 4000 --out data/salad.jsonl.gz

Each run writes ``metrics.csv``, TensorBoard events (``tb/``), ``config.json`` and ``success.png`` (success rate vs
environment samples) into its run directory (default ``runs/<env>-<algo>-s<seed>``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import envs


def _optional_int(text: str) -> Optional[int]:
    return None if text.lower() in ("none", "0") else int(text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, help=f"environment: one of {', '.join(envs.names())}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--llm", default="smollm2", help="LLM prior: 'smollm2' (embedded), a local HF dir or a .gguf file; 'expert-mix:P' is a synthetic prior with P on the env's expert command (alfworld-pick)")
    p.add_argument("--encoder", default="minilm", help="Q features: 'minilm' (embedded) or a local HF BERT dir")
    p.add_argument("--k", type=int, default=5, help="prior candidates per state (paper: 5)")
    p.add_argument("--prior-mode", choices=("exact", "generate"), default="exact",
                   help="exact: sample candidates from the exact prior over admissible actions; "
                        "generate: k LLM generations mapped to actions (the paper's rule)")
    p.add_argument("--prompt", choices=("env", "paper", "chat"), default="env",
                   help="env: the environment's prompt, actions scored as its continuation (TWOSOME); "
                        "paper: RL-LLM-Prior's query listing the admissible actions; chat: that in the chat template")
    p.add_argument("--history", type=int, default=0, metavar="H",
                   help="show the last H (state, action) steps in the paper/chat Overcooked prompt (reference: 5)")
    p.add_argument("--sum-logprobs", action="store_true",
                   help="score actions by summed token log-probs (default: mean, TWOSOME's normalisation)")
    p.add_argument("--feature-style", default=None, choices=("paper", "paper_alfworld", "task"))
    p.add_argument("--max-episode-steps", type=_optional_int, default=None,
                   help="per-episode step cap (default: 31 Tomato, 51 Salad, 20 Frozen Lake, 50 ALFWorld)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--devices", type=int, default=1,
                   help="run each update data-parallel over this many devices (the minibatch is split)")
    p.add_argument("--run-dir", default=None, help="where logs, plots and checkpoints go")
    p.add_argument("--checkpoint-every", type=int, default=0, help="updates between checkpoints (0 = none)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --run-dir")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    from prior_rl.offline import OFFLINE_ALGOS
    from prior_rl.train import ALGOS

    parser = argparse.ArgumentParser(prog="prior-rl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="online training (DQN-Prior, DQN, PPO-Prior, PPO, pure LLM)")
    _common(t)
    t.add_argument("--algo", default="dqn-prior", help=f"one of {', '.join(ALGOS)}")
    t.add_argument("--env-steps", type=int, default=2000, help="environment samples (summed over copies)")
    t.add_argument("--num-envs", type=int, default=4)
    t.add_argument("--epsilon", type=float, default=0.2)
    t.add_argument("--inv-temperature", type=float, default=None,
                   help="Boltzmann over candidates with softmax(inv_temp·Q) (the reference's --alpha 10)")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--llm-sample", action="store_true", help="pure-LLM policy samples instead of greedy")

    o = sub.add_parser("offline", help="offline training (CQL-Prior, CQL)")
    _common(o)
    o.add_argument("--algo", default="cql-prior", help=f"one of {', '.join(OFFLINE_ALGOS)}")
    o.add_argument("--dataset", default=None, help="dataset file (JSON lines, optionally .gz)")
    o.add_argument("--dataset-size", type=int, default=None, help="sub-sample to / generate this many transitions")
    o.add_argument("--updates", type=int, default=10_000)
    o.add_argument("--eval-every", type=int, default=500)
    o.add_argument("--cql-beta", type=float, default=5.0)

    d = sub.add_parser("dataset", help="generate an offline dataset (expert + ε-random mix)")
    d.add_argument("--env", default="overcooked-tomato-lettuce-salad")
    d.add_argument("--size", type=int, required=True)
    d.add_argument("--success-fraction", type=float, default=0.75)
    d.add_argument("--max-episode-steps", type=int, default=51)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", required=True)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dataset":
        from prior_rl import datasets

        data = datasets.generate(args.env, args.size, args.success_fraction, args.max_episode_steps, seed=args.seed)
        path = datasets.save_transitions(data, args.out)
        print(json.dumps({"path": str(path), **datasets.dataset_stats(data)}, indent=2))
        return 0

    default_env = "overcooked-tomato-salad" if args.command == "train" else "overcooked-tomato-lettuce-salad"
    env = args.env or default_env
    run_dir = args.run_dir or str(Path("runs") / f"{env}-{args.algo}-s{args.seed}")
    common = dict(env=env, seed=args.seed, llm=args.llm, encoder=args.encoder, k=args.k, prior_mode=args.prior_mode,
                  prompt=args.prompt, length_normalize=not args.sum_logprobs, history=args.history,
                  feature_style=args.feature_style, max_episode_steps=args.max_episode_steps,
                  eval_episodes=args.eval_episodes, devices=args.devices, run_dir=run_dir,
                  checkpoint_every=args.checkpoint_every,
                  resume=args.resume, progress=not args.no_progress)
    try:
        if args.command == "train":
            from prior_rl.train import TrainConfig, train

            config = TrainConfig(algo=args.algo, env_steps=args.env_steps, num_envs=args.num_envs,
                                 epsilon=args.epsilon, inv_temperature=args.inv_temperature,
                                 eval_every=args.eval_every, llm_sample=args.llm_sample, **common)
            result = train(config)
        else:
            from prior_rl.offline import OfflineConfig, train_offline

            config = OfflineConfig(algo=args.algo, dataset=args.dataset, dataset_size=args.dataset_size,
                                   updates=args.updates, eval_every=args.eval_every, cql_beta=args.cql_beta,
                                   plot=True, **common)
            result = train_offline(config)
    except (ValueError, FileNotFoundError) as exc:
        print(f"prior-rl: error: {exc}", file=sys.stderr)
        return 2
    last = result.history[-1]
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()}
    print(json.dumps({"run_dir": str(result.run_dir), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
