"""Run examples/batch/wordcount.yaml on the cluster `tepui up` started, and check its answer.

    python examples/batch/wordcount.py

It submits the job with the batch framework's Python client (what a notebook would do),
follows it to its end, prints the report stage's output (read through `tepui jobs logs`), and
compares the counts with the same word count done here in Python: exit status 0 when they
agree, 1 when they do not or the job failed.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

from tepui.frameworks.batch.client import BatchClient
from tepui.frameworks.batch.spec import parse_job

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "wordcount.yaml")


def expected() -> list[str]:
    """The report's lines, computed locally from the corpus in the spec."""
    corpus = parse_job(open(SPEC, encoding="utf-8").read()).stage("map").env["CORPUS"]
    counts = collections.Counter(re.findall("[a-z]+", corpus.lower()))
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return [f"words: {sum(counts.values())}", f"distinct: {len(counts)}"] + [f"top: {w} {n}" for w, n in top]


def main() -> int:
    client = BatchClient()
    job = client.submit(SPEC)
    print(f"submitted {job.id}: {job.tasks.total} tasks in {len(job.stages)} stages; waiting ...")
    job = client.wait(job.id, timeout=600, on_update=lambda j: print(
        f"  {j.state:<9} {j.tasks.succeeded}/{j.tasks.total} succeeded", flush=True))
    if job.state != "SUCCEEDED":
        print(f"job {job.id} ended {job.state}: {job.reason}; `tepui jobs show {job.id}` says more")
        return 1
    report = subprocess.run([sys.executable, "-m", "tepui.cli", "jobs", "logs", job.id, "--stage", "report"],
                            capture_output=True, text=True, check=True).stdout
    print(report, end="")
    got, want = report.strip().splitlines(), expected()
    if got != want:
        print("MISMATCH: expected\n  " + "\n  ".join(want))
        return 1
    print("the counts match a local count of the same corpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
