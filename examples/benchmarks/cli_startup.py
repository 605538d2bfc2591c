"""Benchmark: how long `llara-kit --help` and `llara-kit list-plugins` take, warm.

    .venv/bin/python examples/benchmarks/cli_startup.py [--runs 7]

Runs each command in a fresh interpreter (the installed console script) after one warm-up run,
and prints the median and the range of the wall times, and whether the command imported torch,
transformers or peft (it should not: they load only in the commands that need them).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

PROBE = ("import sys, runpy; sys.argv = ['llara-kit', {arg!r}]\n"
         "try:\n    runpy.run_path({script!r}, run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "print('heavy imports:', sorted(m for m in ('torch', 'transformers', 'peft') "
         "if m in sys.modules), file=sys.stderr)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    script = shutil.which("llara-kit")
    if script is None:
        sys.exit("llara-kit is not on PATH; run this with the project's venv activated.")
    for arg in ("--help", "list-plugins"):
        command = [script, arg]
        subprocess.run(command, capture_output=True, check=True)  # warm-up (file cache)
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            seconds.append(time.perf_counter() - started)
        probe = subprocess.run([sys.executable, "-c", PROBE.format(arg=arg, script=script)],
                               capture_output=True, text=True, check=True)
        heavy = probe.stderr.strip().splitlines()[-1]
        print(f"llara-kit {arg:12s} median {statistics.median(seconds):.2f} s "
              f"(range {min(seconds):.2f}-{max(seconds):.2f} s over {args.runs} runs); {heavy}")


if __name__ == "__main__":
    main()
