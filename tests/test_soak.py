"""A short soak: scripts/soak against one daemon, its leak checks as they are, its speed floor low.

The full run (`scripts/soak 1800`) and its figures are in docs/measurements/soak.md; speed is not judged in the
suite (the machine may be shared), only that detection keeps going under the churn.
"""
import re
import subprocess

from conftest import ROOT


def test_short_soak():
    result = subprocess.run([str(ROOT / "scripts" / "soak"), "12", "--warmup", "4", "--min-fps", "2"],
                            capture_output=True, text=True, timeout=150)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.split()[0] in ("start", "warm-up", "end")] == \
        ["start", "warm-up", "end"]
    churn = next(line for line in lines if line.startswith("churn:"))
    counts = {name: int(n) for n, name in re.findall(r"(\d+) (\w+)", churn)}
    kinds = ("subscribers", "viewers_dropped", "polls", "half_requests", "outages")
    assert all(counts[name] > 0 for name in kinds), churn
    assert "soak: passed" in lines[-1]
