"""Training time on the CPU against a CUDA device, for the models that declare both.

One split (leave-last-one-out by time, seed 42, as issue 12's protocol), each model of
``--models`` fitted once per device of ``--devices`` with the same seed
(``TrainingOptions(device=..., seed=0)``), then measured on the same held-out items: the fit's
seconds, nDCG@10 and HR@10 (a device must not cost quality; the two are not bit-identical, as
the device draws its own random numbers), and the peak memory: the CUDA device's allocations
(``torch.cuda.max_memory_allocated``) or this process's resident set so far. One JSON line per
fit, then a table with each model's CPU seconds over its CUDA seconds.

On a machine with a GPU (the command a device session runs as it is):

    python benchmarks/bench_device.py --dataset movielens-latest-small \\
        --path ../shared/datasets/ml-latest-small --models sasrec --devices cpu,cuda

``--cpu-threads`` bounds the CPU fits' threads (default: torch's own count, every core);
``--params '{"sasrec": {"epochs": 2}}'`` sets models' configuration (name → settings). A device
the machine lacks is refused before any fit.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from recengine.data.loaders import load_dataset
from recengine.evaluation.evaluator import evaluate
from recengine.models.base import TrainingOptions
from recengine.models.registry import create_model
from recengine.models.torch_training import torch_module
from recengine.pipeline.prepare import prepare


def peak_mb(device: str) -> float:
    """The peak memory since the last reset: the device's allocations, or this process's
    resident set (which only grows)."""
    if device == "cuda":
        return torch_module().cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="movielens-latest-small")
    parser.add_argument("--path", default="../shared/datasets/ml-latest-small")
    parser.add_argument("--models", default="sasrec")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--params", type=json.loads, default={},
                        help="JSON: model name → its settings (default: its defaults)")
    args = parser.parse_args()
    torch = torch_module()
    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        sys.exit("--devices names cuda, but torch sees no CUDA device on this machine")
    dataset, _ = load_dataset(args.dataset, args.path, seed=42)
    prepared = prepare(dataset, "last", seed=42, last_n=1)
    seconds: dict[tuple[str, str], float] = {}
    for name in args.models.split(","):
        for device in devices:
            model = create_model(name, **args.params.get(name, {}))
            if device not in model.devices:
                sys.exit(f"{name} does not train on {device} (its devices: {model.devices})")
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            options = TrainingOptions(device=device, seed=0,
                                      threads=args.cpu_threads if device == "cpu" else None)
            start = time.perf_counter()
            model.fit(prepared.data, options=options)
            seconds[name, device] = time.perf_counter() - start
            metrics = evaluate({name: model}, prepared.data, prepared.split, ks=(10,),
                               prefitted=[name]).models[name].metrics
            print(json.dumps({"model": name, "device": device,
                              "fit_s": round(seconds[name, device], 1),
                              "peak_mb": round(peak_mb(device)),
                              "ndcg@10": round(metrics["ndcg@10"], 4),
                              "hit_rate@10": round(metrics["hit_rate@10"], 4),
                              "threads": (args.cpu_threads or torch.get_num_threads())
                              if device == "cpu" else None,
                              "gpu": torch.cuda.get_device_name() if device == "cuda"
                              else None}), flush=True)
    print(f"\n{args.dataset}, leave-last-one-out (seed 42), fit seconds by device")
    for name in args.models.split(","):
        row = "  ".join(f"{device} {seconds[name, device]:.1f} s" for device in devices)
        ratio = (f"  cpu / cuda {seconds[name, 'cpu'] / seconds[name, 'cuda']:.1f}×"
                 if {"cpu", "cuda"} <= set(devices) else "")
        print(f"{name:>10s}  {row}{ratio}")


if __name__ == "__main__":
    main()
