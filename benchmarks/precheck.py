"""The pre-check's cost per job: `regbench run -m`'s check of every job before Hydra launches anything.

For each sweep size, a fresh interpreter checks a sweep of that many jobs (two regularizers × seeds, one-epoch
tiny runs) with :func:`regbench.validate.check_command`, after a one-job warm-up of the same command (imports,
data generation, the first compositions: paid once whatever the size). It prints:
- time per job: the check's wall time over the number of jobs;
- memory per job: the subprocess's peak resident set (VmHWM, reset after the warm-up through
  /proc/self/clear_refs) over its resident set before the check, over the number of jobs;
- stack plan per job: then :func:`regbench.sweep.stacks.prepare` (plan the stacks and write the plan file),
  time per job, as `regbench run -m` does next.
Targets (issue #34): the pre-check's time and memory linear in the sweep's size, ≤ 5 ms and ≤ 50 KB a job.

    python benchmarks/precheck.py [--sizes 100,2000,10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import gc, json, sys, time
from regbench.validate import check_command
from regbench.sweep.stacks import prepare

n, sweep_dir = int(sys.argv[1]), sys.argv[2]

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

check_command(["debug=tiny", "regularizer=none,dropout", "seed=0", f"hydra.sweep.dir={sweep_dir}/warm"], multirun=True)
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak resident set (VmHWM) starts again from the current one
before = status("VmRSS")
start = time.perf_counter()
plan = check_command(["debug=tiny", "regularizer=none,dropout", f"seed=range({n // 2})", f"hydra.sweep.dir={sweep_dir}/sweep"],
                     multirun=True)
seconds = time.perf_counter() - start
peak = status("VmHWM")
start = time.perf_counter()
prepare(plan)
planned = time.perf_counter() - start
print(json.dumps({"jobs": len(plan.jobs), "checked": len(plan.configs), "seconds": seconds, "before": before, "peak": peak,
                  "plan_seconds": planned, "after_plan_peak": status("VmHWM")}))
"""


def measure(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), d], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,2000,10000")
    args = parser.parse_args()
    print(f"{'jobs':>6} {'checked':>7} {'pre-check s':>11} {'ms/job':>7} {'RSS before MB':>13} {'peak MB':>8} {'KB/job':>7}"
          f" {'stack plan ms/job':>17}   (targets: ≤ 5 ms, ≤ 50 KB a job)")
    for n in (int(s) for s in args.sizes.split(",")):
        r = measure(n)
        jobs = r["jobs"]
        print(f"{jobs:>6} {r['checked']:>7} {r['seconds']:>11.2f} {1e3 * r['seconds'] / jobs:>7.2f} {r['before'] / 1e6:>13.0f}"
              f" {r['peak'] / 1e6:>8.0f} {(r['peak'] - r['before']) / 1e3 / jobs:>7.1f} {1e3 * r['plan_seconds'] / jobs:>17.2f}",
              flush=True)


if __name__ == "__main__":
    main()
