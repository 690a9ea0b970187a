"""Next item, leave-last-one-out: how much a model's fit seed moves its score, beside the others.

One split (``--split last --last-n 1 --seed 42``, as the issue's protocol, or with
``--validation`` the carve of its training part that ``recengine tune`` selects on), the same
``prepare`` and ``evaluate`` as the CLI; every model of ``--models`` fitted once per seed of
``--seeds`` (``TrainingOptions(seed=..., threads=1)``; the CLI's fit is seed 0) and measured on
the same held-out items. Prints one JSON line per fit, then each model's mean and standard
deviation over the seeds, and per seed how far the first model is from each other one, with the
paired bootstrap's 95 % interval over the test users (``paired_bootstrap``: would the lead hold
on another draw of users?):

    python benchmarks/next_item_seeds.py --dataset movielens-latest-small \\
        --path ../shared/datasets/ml-latest-small --models sasrec,markov,ease \\
        --seeds 0,43,44,45,46

``--params '{"sasrec": {"dropout": 0.5}}'`` sets models' configuration (name → settings).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from recengine.data.loaders import load_dataset
from recengine.evaluation.evaluator import evaluate
from recengine.evaluation.metrics import paired_bootstrap
from recengine.models.base import TrainingOptions
from recengine.models.registry import create_model
from recengine.pipeline.prepare import carve_validation, prepare

METRICS = ("ndcg@10", "hit_rate@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="movielens-latest-small")
    parser.add_argument("--path", default="../shared/datasets/ml-latest-small")
    parser.add_argument("--models", default="sasrec,markov")
    parser.add_argument("--seeds", default="0,43,44,45,46")
    parser.add_argument("--params", type=json.loads, default={},
                        help="JSON: model name → its settings (default: its defaults)")
    parser.add_argument("--validation", action="store_true",
                        help="score on the carve of the training part, not the test part")
    args = parser.parse_args()
    dataset, _ = load_dataset(args.dataset, args.path, seed=42)
    prepared = prepare(dataset, "last", seed=42, last_n=1)
    if args.validation:
        prepared = carve_validation(dataset, prepared, "last", seed=42, last_n=1)
    names, seeds = args.models.split(","), [int(s) for s in args.seeds.split(",")]
    scores = {name: np.zeros((len(seeds), len(METRICS))) for name in names}
    per_user: dict[tuple[str, int], np.ndarray] = {}
    for row, seed in enumerate(seeds):
        for name in names:
            model = create_model(name, **args.params.get(name, {}))
            start = time.perf_counter()
            model.fit(prepared.data, options=TrainingOptions(seed=seed, threads=1))
            fit = time.perf_counter() - start
            result = evaluate({name: model}, prepared.data, prepared.split, ks=(10,),
                              prefitted=[name]).models[name]
            metrics, per_user[name, seed] = result.metrics, result.per_user[METRICS[0]]
            scores[name][row] = [metrics[m] for m in METRICS]
            print(json.dumps({"model": name, **args.params.get(name, {}), "seed": seed,
                              "scored_on": "validation"
                              if args.validation else "test", "fit_s": round(fit, 1)}
                             | {m: round(metrics[m], 4) for m in METRICS}), flush=True)
    print(f"\n{args.dataset}, {len(seeds)} fit seeds ({args.seeds}), scored on the "
          f"{'validation carve' if args.validation else 'test part'}")
    ddof = 1 if len(seeds) > 1 else 0
    for name, values in scores.items():
        print(f"{name:>12s}  " + "  ".join(
            f"{m} {values[:, j].mean():.4f} ± {values[:, j].std(ddof=ddof):.4f}"
            for j, m in enumerate(METRICS)))
    first = names[0]
    for name in names[1:]:
        gap = scores[first][:, 0] - scores[name][:, 0]
        print(f"{first} − {name}, nDCG@10 per seed: "
              + ", ".join(f"{g:+.4f}" for g in gap) + f"  (ahead on {(gap >= 0).sum()} of "
              f"{len(seeds)})")
        for seed in seeds:
            d = paired_bootstrap(per_user[first, seed], per_user[name, seed])
            print(f"    seed {seed}: {d.mean:+.4f}, 95 % interval {d.low:+.4f} … {d.high:+.4f}"
                  f" over {d.users} users, {d.share_not_ahead:.1%} of draws not ahead")


if __name__ == "__main__":
    main()
