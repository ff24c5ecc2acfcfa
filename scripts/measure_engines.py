"""Side by side, in one run: onnxruntime fp32 with weight prepacking (the default), without it
(`low_memory`), the seed's Chainer path, and onnxruntime taking turns with Chainer in one process
(how `bench` measured before), each on a weights file of the real size. Rounds alternate the order;
each figure is the median over the rounds of each run's median inference time. Every run but the
last kind is alone in a spawned process (detector/bench.py), as the daemon runs its engine.

Run as `.venv/bin/python scripts/measure_engines.py --weights-dir DIR [--rounds 3] [--frames 20]`,
DIR holding yolo-tiny.weights and yolov1-tiny.weights (any values: speed does not depend on them).
With LD_PRELOAD=/tmp/hide_avx512.so (built by `gcc -O2 -shared -fPIC -o /tmp/hide_avx512.so
scripts/hide_avx512.c`) every process sees a CPU without AVX-512 (docs/measurements/engines.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from detector.bench import BenchRun, bench_engines, cpu_description, measure_alone
from detector.model.builder import PredictorSpec

KINDS = ("onnxruntime", "onnxruntime low_memory", "chainer", "onnxruntime beside chainer")


def inference_ms(result: dict) -> float:
    return result["stages"]["inference"]["median_ms"]


def measure(kind: str, weights: Path, frames: int) -> float:
    if kind == "onnxruntime beside chainer":
        spec = PredictorSpec(weights=str(weights), require_names=False)
        run = BenchRun(spec, frames, "")
        results = bench_engines(run.load(), [("onnxruntime", "fp32"), ("chainer", "fp32")], spec, frames)
        return inference_ms(results[0])
    engine, _, option = kind.partition(" ")
    spec = PredictorSpec(weights=str(weights), engine=engine, low_memory=option == "low_memory", require_names=False)
    return inference_ms(measure_alone(BenchRun(spec, frames, "")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    cpu = cpu_description()
    print(f"CPU as the processes see it: {cpu['model']} ({', '.join(cpu['flags'])})", flush=True)
    summary = {}
    for model in ("yolo-tiny", "yolov1-tiny"):
        weights = args.weights_dir / f"{model}.weights"
        times = {kind: [] for kind in KINDS}
        for round_index in range(args.rounds):
            order = KINDS if round_index % 2 == 0 else tuple(reversed(KINDS))
            for kind in order:
                times[kind].append(measure(kind, weights, args.frames))
                print(f"{model} round {round_index + 1}: {kind} {times[kind][-1]:.1f} ms", flush=True)
        medians = {kind: round(statistics.median(values), 1) for kind, values in times.items()}
        ratios = [chainer / onnx for chainer, onnx in zip(times["chainer"], times["onnxruntime"])]
        summary[model] = {"inference_median_ms": medians, "runs_ms": times,
                          "chainer_over_onnxruntime": round(statistics.median(ratios), 1)}
    print(json.dumps({"cpu": cpu, "frames": args.frames, "rounds": args.rounds, "models": summary}))


if __name__ == "__main__":
    main()
