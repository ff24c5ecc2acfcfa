"""`bench` (issue 16 item 7): it names the CPU and its SIMD extensions, and measures each engine alone
in a process of its own."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from detector.bench import BenchRun, cpu_description, measure_alone
from detector.errors import UserError
from detector.model.builder import PredictorSpec

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD Ryzen 5 3600 6-Core Processor
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 sha_ni
"""
X86_512 = X86.replace("AMD Ryzen 5 3600 6-Core Processor", "Intel(R) Xeon(R) Gold 6338").replace(
    "avx2", "avx2 avx512f avx512dq avx512_vnni")
ARM = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU part\t: 0xd08

Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


@pytest.mark.parametrize("cpuinfo, model, flags", [
    (X86, "AMD Ryzen 5 3600 6-Core Processor", ["AVX2"]),
    (X86_512, "Intel(R) Xeon(R) Gold 6338", ["AVX2", "AVX-512", "AVX512-VNNI"]),
    (ARM, "Raspberry Pi 4 Model B Rev 1.4", ["NEON"]),
])
def test_cpu_description_names_the_model_and_its_simd_extensions(cpuinfo, model, flags):
    assert cpu_description(cpuinfo) == {"model": model, "flags": flags}


def test_bench_json_and_header_carry_the_cpu_of_this_machine():
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    expected = cpu_description(cpuinfo)
    result = run_cli("bench", "--model", "yolov1-tiny", "--engine", "onnxruntime,opencv", "--frames", 2, "--json")
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["engine"] for r in reports] == ["onnxruntime", "opencv"]
    for report in reports:
        assert report["cpu"] == expected and set(report["cpu"]) == {"model", "flags"}
        assert report["low_memory"] is False and report["stages"]["inference"]["median_ms"] > 0
    table = run_cli("bench", "--model", "yolov1-tiny", "--engine", "onnxruntime", "--frames", 2, "--low-memory")
    assert table.returncode == 0, table.stderr
    assert f"CPU: {expected['model']}" in table.stdout
    assert all(flag in table.stdout for flag in expected["flags"])


def test_each_engine_is_measured_in_a_process_of_its_own():
    """The Chainer engine measured from a fresh interpreter loads Chainer (and its BLAS threads) only in
    its own process: the measuring one never imports it."""
    script = ("import json, sys\n"
              "from detector.bench import BenchRun, measure_alone\n"
              "from detector.model.builder import PredictorSpec\n"
              "result = measure_alone(BenchRun(PredictorSpec(engine='chainer'), 2, 'yolov1-tiny'))\n"
              "print(json.dumps({'engine': result['engine'], 'frames': result['frames'],\n"
              "                  'chainer_here': 'chainer' in sys.modules}))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"engine": "chainer", "frames": 2, "chainer_here": False}


def test_an_engines_failure_in_its_process_is_the_users_error(tmp_path):
    spec = PredictorSpec(engine="onnxruntime", precision="int8", calibration=str(tmp_path / "no-such-folder"))
    with pytest.raises(UserError, match="no-such-folder"):
        measure_alone(BenchRun(spec, 2, "yolov1-tiny"))
    result = run_cli("bench", "--model", "yolov1-tiny", "--engine", "onnxruntime", "--precision", "fp32,int8",
                     "--calibration", tmp_path / "no-such-folder", "--frames", 2)
    assert result.returncode != 0 and "no-such-folder" in result.stderr and "Traceback" not in result.stderr
