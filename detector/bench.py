"""`robot-detector bench`: per-stage latency (median, p95) and throughput of each engine."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from .model.builder import PredictorSpec, build_predictor
from .model.network import Model

WARMUP_FRAMES = 3


def summary(values_ms) -> dict:
    return {"median_ms": round(float(np.median(values_ms)), 3),
            "p95_ms": round(float(np.percentile(values_ms, 95)), 3)}


def bench_frames(count: int, width: int = 640, height: int = 480) -> list:
    """A few distinct camera-sized frames (smooth gradients and noise) to cycle through."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    frames = []
    for _ in range(min(count, 4)):
        noise = rng.normal(0, 30, (height, width, 3)).astype(np.float32)
        frames.append(np.clip(ramp * rng.uniform(0.3, 1.0, 3) + noise, 0, 255).astype(np.uint8))
    return frames


def bench_engines(model: Model, runs: list, spec: PredictorSpec, frames: int) -> list:
    """Each (engine, precision) in `runs` on the same frames, taking turns frame by frame, so that
    a busy machine slows them alike and their ratios hold within one run."""
    predictors = [build_predictor(replace(spec, engine=engine, precision=precision), model) for engine, precision in runs]
    images = bench_frames(frames)
    for predictor in predictors:
        for i in range(WARMUP_FRAMES):
            predictor.predict(images[i % len(images)])
    stages = [{"preprocess": [], "inference": [], "decode": [], "end_to_end": []} for _ in predictors]
    wall_s, cpu_s = [0.0] * len(predictors), [0.0] * len(predictors)
    for i in range(frames):
        for k, predictor in enumerate(predictors):
            # Process CPU time: every thread of this process (the engine's pool included), i.e.
            # the CPU the robot's PC cannot use for anything else while a frame is processed.
            t0, cpu0 = time.perf_counter(), time.process_time()
            prediction = predictor.predict(images[i % len(images)])
            t1, cpu1 = time.perf_counter(), time.process_time()
            wall_s[k] += t1 - t0
            cpu_s[k] += cpu1 - cpu0
            stages[k]["end_to_end"].append((t1 - t0) * 1e3)
            stages[k]["preprocess"].append(prediction.preprocess_ms)
            stages[k]["inference"].append(prediction.inference_ms)
            stages[k]["decode"].append(prediction.decode_ms)
    return [{"engine": p.engine.name, "precision": p.engine.precision, "device": p.engine.device, "model": model.name,
             "frames": frames, "fps": round(frames / wall_s[k], 2), "cpu_ms_per_frame": round(cpu_s[k] / frames * 1e3, 2),
             "stages": {name: summary(values) for name, values in stages[k].items()}}
            for k, p in enumerate(predictors)]


def bench_pipeline(config, model: Model, frames: int) -> dict:
    """The whole daemon (capture thread, predictor, tracker, ZeroMQ) on `config.source`: latency
    from frame capture to publication, as a subscriber on loopback receives it."""
    import threading
    from dataclasses import replace

    import zmq

    from robot_client import protocol

    from .daemon.service import Service
    service = Service(replace(config, max_frames=frames + WARMUP_FRAMES, http=None, pub="tcp://127.0.0.1:*"), model)
    received = []
    subscriber = zmq.Context.instance().socket(zmq.SUB)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"person ")
    subscriber.connect(service.publisher.endpoint)
    done = threading.Event()

    def listen():
        while not done.is_set():
            if subscriber.poll(50):
                t_receive = time.time()
                received.append((protocol.decode(subscriber.recv())[1], t_receive))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.3)  # let the subscription reach the publisher before frames flow
    service.run()
    time.sleep(0.2)
    done.set()
    listener.join()
    subscriber.close(linger=0)
    measured = [(m, t) for m, t in received if m["seq"] >= WARMUP_FRAMES]
    publish_ms = [(m["t_publish"] - m["t_capture"]) * 1e3 for m, _ in measured]
    receive_ms = [(t - m["t_capture"]) * 1e3 for m, t in measured]
    span = measured[-1][0]["t_publish"] - measured[0][0]["t_publish"] if len(measured) > 1 else 0.0
    engine = service.predictor.engine
    return {"engine": engine.name, "device": engine.device, "model": service.model.name, "frames": len(measured),
            "fps": round((len(measured) - 1) / span, 2) if span else 0.0, "source": service.source,
            "dropped": service.capture.dropped,
            "stages": {"inference": summary(list(service.stats.inference_ms)[-len(measured):]),
                       "capture_to_publish": summary(publish_ms), "capture_to_receive": summary(receive_ms)}}


def print_pipeline_table(results: list) -> None:
    print(f"whole pipeline on {results[0]['source']}; milliseconds as median / p95")
    print(f"{'engine':<12} {'device':<6} {'capture->publish':>18} {'capture->receive':>18} {'fps':>7} {'dropped':>8}")
    for r in results:
        s = r["stages"]
        cells = [f"{s[k]['median_ms']:.1f} / {s[k]['p95_ms']:.1f}" for k in ("capture_to_publish", "capture_to_receive")]
        print(f"{r['engine']:<12} {r['device']:<6} {cells[0]:>18} {cells[1]:>18} {r['fps']:>7.1f} {r['dropped']:>8}")


def print_table(results: list) -> None:
    baseline = next((r for r in results if r["engine"] == "chainer" and r["device"] == "cpu"), None)
    print(f"model {results[0]['model']}, {results[0]['frames']} frames each, engines taking turns; "
          "milliseconds as median / p95; cpu: process CPU time per frame (all threads)")
    print(f"{'engine':<12} {'prec':<5} {'device':<6} {'preprocess':>14} {'inference':>16} {'decode':>12} "
          f"{'end to end':>16} {'cpu ms':>7} {'fps':>7}  speed-up")
    for r in results:
        s = r["stages"]
        cell = {name: f"{s[name]['median_ms']:.2f} / {s[name]['p95_ms']:.2f}" for name in s}
        speedup = (f"{baseline['stages']['inference']['median_ms'] / s['inference']['median_ms']:.1f}x"
                   if baseline else "-")
        print(f"{r['engine']:<12} {r['precision']:<5} {r['device']:<6} {cell['preprocess']:>14} {cell['inference']:>16} "
              f"{cell['decode']:>12} {cell['end_to_end']:>16} {r['cpu_ms_per_frame']:>7.1f} {r['fps']:>7.1f}  {speedup}")
    if baseline:
        print("speed-up: inference median of the Chainer CPU engine (the seed's path) / this engine's")


def run_bench(model: Model, runs: list, spec: PredictorSpec, frames: int, as_json: bool,
              pipeline_source: str | None = None) -> list:
    """`runs`: (engine, precision) pairs; the model stages of all of them in one interleaved run,
    or with `pipeline_source` the whole daemon on that source, one after the other."""
    from .daemon.config import Config, validate
    if pipeline_source is None:
        results = bench_engines(model, runs, spec, frames)
    else:
        results = []
        for engine, precision in runs:
            config = validate(Config(source=pipeline_source, loop=True, engine=engine, device=spec.device,
                                     precision=precision, calibration=spec.calibration, low_memory=spec.low_memory))
            results.append(bench_pipeline(config, model, frames))
    if as_json:
        for result in results:
            print(json.dumps(result), flush=True)
    else:
        (print_table if pipeline_source is None else print_pipeline_table)(results)
    return results
