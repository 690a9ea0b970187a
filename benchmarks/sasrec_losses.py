"""SASRec's loss table: each loss fitted with every other setting at its defaults, on one split.

Next item, leave-last-one-out (``--split last --last-n 1 --seed 42``), the same ``prepare`` and
``evaluate`` as the CLI; one line of JSON per loss (nDCG@10, HR@10, fit time, the validation
curve). Extra settings as JSON, losses comma-separated:

    python benchmarks/sasrec_losses.py movielens-100k ../shared/datasets/ml-100k '{}' \\
        bce,gbce,softmax

With ``--validation`` each loss is fitted on the validation carve of the training part and
scored on the carve's held-out part (``carve_validation``, as ``recengine tune`` does), never
on the test part: the figures defaults are chosen on.
"""

from __future__ import annotations

import json
import sys
import time

from recengine.data.loaders import load_dataset
from recengine.evaluation.evaluator import evaluate
from recengine.models.base import TrainingOptions
from recengine.models.sasrec import SASRec
from recengine.pipeline.prepare import carve_validation, prepare


def main() -> None:
    validation = "--validation" in sys.argv
    args = [arg for arg in sys.argv[1:] if arg != "--validation"]
    dataset, path = args[0], args[1]
    extra = json.loads(args[2]) if len(args) > 2 else {}
    losses = args[3].split(",") if len(args) > 3 else ["bce", "gbce", "softmax"]
    data, _ = load_dataset(dataset, path, seed=42)
    prepared = prepare(data, "last", seed=42, last_n=1)
    if validation:
        prepared = carve_validation(data, prepared, "last", seed=42, last_n=1)
    print("items", prepared.data.n_items, "users", prepared.data.n_users, flush=True)
    for loss in losses:
        model = SASRec(loss=loss, **extra)
        start = time.time()
        model.fit(prepared.data, options=TrainingOptions(threads=1))
        fit = time.time() - start
        result = evaluate({loss: model}, prepared.data, prepared.split, ks=(10,),
                          prefitted=[loss])
        metrics = result.models[loss].metrics
        print(json.dumps({"loss": loss, **extra, "scored_on": "validation" if validation
                          else "test", "ndcg@10": round(metrics["ndcg@10"], 4),
                          "hr@10": round(metrics["hit_rate@10"], 4), "fit_s": round(fit, 1),
                          "epochs_run": len(model.validation_[0]),
                          "best_epoch": model.best_epoch_[0],
                          "val": [round(v, 4) for v in model.validation_[0]]}), flush=True)


if __name__ == "__main__":
    main()
