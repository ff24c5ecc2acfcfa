"""`robot-detector bench`: per-stage latency (median, p95) and throughput of each engine.

Each engine (and precision) is measured alone in a process of its own, as the daemon runs it: in
one process, the BLAS threads of one engine still spin after its call and take the cores from the
next (docs/measurements/engines.md). Every result names the CPU and its SIMD extensions.
"""
from __future__ import annotations

import json
import multiprocessing
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import UserError
from .model.builder import PredictorSpec, build_predictor
from .model.network import Model

WARMUP_FRAMES = 3
# /proc/cpuinfo flag -> the name benchmarks report: the vector units the engines' kernels choose from
SIMD_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
              "neon": "NEON", "asimd": "NEON"}


def cpu_description(cpuinfo: str | None = None) -> dict:
    """{"model": the CPU's name, "flags": its SIMD extensions that matter for inference}, from
    /proc/cpuinfo (x86: "model name" and "flags"; ARM: "Model" or "CPU part", and "Features")."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.processor() \
        or platform.machine()
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    flags = []
    for flag, name in SIMD_FLAGS.items():
        if flag in present and name not in flags:
            flags.append(name)
    return {"model": model or "unknown", "flags": flags}


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
    """Each (engine, precision) in `runs` on the same frames, in this process, taking turns frame by
    frame (run_bench gives each its own process instead)."""
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
    print(f"model {results[0]['model']}, {results[0]['frames']} frames each, each engine alone in its own process; "
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


@dataclass(frozen=True)
class BenchRun:
    """One engine at one precision (in `spec`): the model stages, or with `pipeline_source` the whole
    daemon on that source. Small enough to hand to the engine's own process, which loads the model."""
    spec: PredictorSpec
    frames: int
    generated: str                      # shipped cfg whose generated weights stand in when spec.weights is None
    pipeline_source: str | None = None

    def load(self) -> Model:
        if self.spec.weights:
            from .model.builder import load
            return load(self.spec)
        from .model.network import planted_model
        from .model.cfg import shipped_specs
        # Speed does not depend on parameter values; planted persons give decode realistic work.
        return planted_model(shipped_specs()[self.generated], [(0.3, 0.5, 0.2, 0.6), (0.7, 0.45, 0.15, 0.5)])

    def measure(self, model: Model) -> dict:
        spec = self.spec
        if self.pipeline_source is None:
            result = bench_engines(model, [(spec.engine, spec.precision)], spec, self.frames)[0]
        else:
            from .daemon.config import Config, validate
            config = validate(Config(source=self.pipeline_source, loop=True, engine=spec.engine, device=spec.device,
                                     precision=spec.precision, calibration=spec.calibration,
                                     low_memory=spec.low_memory))
            result = bench_pipeline(config, model, self.frames)
        return {**result, "low_memory": spec.low_memory, "cpu": cpu_description()}


def _measure_alone(run: BenchRun, connection) -> None:
    """The body of an engine's own process: its result, or the error that stopped it, to the parent."""
    try:
        connection.send(("result", run.measure(run.load())))
    except UserError as error:
        connection.send(("user-error", str(error), error.exit_code))
    except Exception as error:  # noqa: BLE001 - reported by the parent as that engine's failure
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


def measure_alone(run: BenchRun) -> dict:
    """`run` in a fresh process (spawned: no thread, library or engine of this one is carried over)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_measure_alone, args=(run, sender), name=f"bench-{run.spec.engine}")
    process.start()
    sender.close()
    try:
        message = receiver.recv()
    except EOFError:
        message = ("error", f"its process ended without a result (exit code {process.exitcode})")
    finally:
        process.join()
    if message[0] == "user-error":
        raise UserError(message[1], message[2])
    if message[0] == "error":
        raise RuntimeError(f"bench of {run.spec.engine} ({run.spec.precision}): {message[1]}")
    return message[1]


def run_bench(runs: list, as_json: bool, model: Model | None = None) -> list:
    """`runs`: BenchRun each. Several are measured one after the other, each alone in its own process;
    a single one in this process (`model`: already loaded), which is then alone too."""
    results = []
    for run in runs:
        result = run.measure(model or run.load()) if len(runs) == 1 else measure_alone(run)
        results.append(result)
        if as_json:
            print(json.dumps(result), flush=True)
    if not as_json:
        cpu = results[0]["cpu"]
        print(f"CPU: {cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2, AVX-512 or NEON'})")
        (print_table if runs[0].pipeline_source is None else print_pipeline_table)(results)
    return results
