"""End of a sweep: a one-line count per status; non-zero exit if any job failed. (Extended by the sweep tools.)"""

from __future__ import annotations


def end_of_sweep(args, statuses) -> int:
    counts: dict[str, int] = {}
    for _, status in statuses:
        counts[status] = counts.get(status, 0) + 1
    print("sweep: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for run_dir, status in statuses:
        if status == "failed":
            print(f"  failed: {run_dir} (see its result.json and regbench.log)")
    return 1 if counts.get("failed") else 0
