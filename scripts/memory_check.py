#!/usr/bin/env python3
"""Does a taskmanager stay inside taskmanager.memory.process.size? (issue 20's memory test)

Starts a jobmanager and one taskmanager (one slot) at each process size, runs a keyed job whose
state holds KEYS distinct keys (`window`: a tumbling window that fires at the end of input over
all of them; `aggregate`: a continuous aggregate per key, each key's new values emitted as its
rows arrive), and samples the taskmanager's /proc/PID/status VmRSS and VmHWM every 0.5 s. Prints one
line per run: backend, process size, keys, peak RSS, VmHWM, the job's end state (and its
cause when it failed), and whether the peak stayed inside the process size. Exits 1 when a
run's peak exceeded it.

    scripts/memory_check.py [--sizes 768m,2g] [--keys 4000000] [--backends rocksdb,hashmap]
                            [--jobs window,aggregate]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (its Sluice cluster and REST helpers)


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mib(size):
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return float(size[:-1]) * units[size[-1].lower()]


def aggregate_job(keys):
    """Every key twice (two passes over the keys), so half the rows update a stored key."""
    return f"""name: memory-aggregate
parallelism: 1
sources:
  - id: s
    connector: datagen
    options: {{number-of-rows: {keys * 2}}}
    schema:
      - {{name: k, type: bigint, expr: "seq % {keys}"}}
      - {{name: v, type: double, expr: "CAST(seq % 10 AS DOUBLE)"}}
operators:
  - id: a
    input: s
    key-by: [k]
    aggregate: {{n: "count(*)", total: "sum(v)"}}
sinks:
  - {{id: o, input: a, connector: blackhole}}
"""


def window_job(keys):
    return f"""name: memory-window
parallelism: 1
sources:
  - id: s
    connector: datagen
    options: {{number-of-rows: {keys}}}
    schema:
      - {{name: k, type: bigint, expr: "seq"}}
      - {{name: v, type: double, expr: "CAST(seq % 10 AS DOUBLE)"}}
      - {{name: ts, type: timestamp, expr: "to_timestamp_millis(1767225600000 + seq % 1000)"}}
    watermark: {{column: ts, max-out-of-orderness: 1 s}}
operators:
  - id: w
    input: s
    key-by: [k]
    window: {{type: tumbling, size: 1 h}}
    aggregate: {{n: "count(*)", total: "sum(v)"}}
sinks:
  - {{id: o, input: w, connector: blackhole}}
"""


JOBS = {"window": window_job, "aggregate": aggregate_job}


def run(bin_dir, job, backend, size, keys, timeout):
    bench.TM_MEMORY = size
    work = tempfile.mkdtemp(prefix="sluice-memory-")
    cluster = bench.Sluice(bin_dir, work)
    try:
        # Sluice has no JVM: Flink's metaspace and overhead defaults (256m, at least 192m) would
        # leave a 768m process no Flink memory at all, so both are made small.
        cluster.start(
            1,
            1,
            f"state.backend.type: {backend}\nrestart-strategy.type: none\n"
            "taskmanager.memory.jvm-metaspace.size: 64m\ntaskmanager.memory.jvm-overhead.min: 64m\n",
        )
        pid = cluster.tm_pids()[0]
        jid = cluster.submit(JOBS[job](keys))
        peak, hwm, state, deadline = 0, 0, "", time.time() + timeout
        while time.time() < deadline:
            peak = max(peak, status_kb(pid, "VmRSS"))
            hwm = max(hwm, status_kb(pid, "VmHWM"))
            job = cluster.job(jid) or {}
            state = job.get("state", "")
            if state in ("FINISHED", "FAILED", "CANCELED"):
                break
            time.sleep(0.5)
        cause = ""
        if state == "FAILED":
            ex = bench.get_json(f"http://127.0.0.1:{cluster.rest}/jobs/{jid}/exceptions") or {}
            entries = ex.get("exceptionHistory", {}).get("entries", [])
            cause = entries[0].get("stacktrace", "")[:200] if entries else ""
        return peak / 1024, hwm / 1024, state or "TIMEOUT", cause
    finally:
        cluster.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_bin = os.path.join(os.environ.get("SLUICE_TARGET_DIR", os.path.expanduser("~/.cache/sluice-target")), "release")
    ap.add_argument("--sluice-bin", default=default_bin)
    ap.add_argument("--sizes", default="768m,2g")
    ap.add_argument("--keys", default="4000000")
    ap.add_argument("--backends", default="rocksdb,hashmap")
    ap.add_argument("--jobs", default="window")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    over = False
    print(f"{'job':9} {'backend':8} {'process':>8} {'keys':>9} {'peak RSS':>10} {'VmHWM':>10}  result")
    for job in a.jobs.split(","):
        for backend in a.backends.split(","):
            for size in a.sizes.split(","):
                for keys in a.keys.split(","):
                    peak, hwm, state, cause = run(a.sluice_bin, job, backend, size, int(keys), a.timeout)
                    inside = max(peak, hwm) <= mib(size)
                    over |= not inside
                    verdict = "inside" if inside else "OVER"
                    print(f"{job:9} {backend:8} {size:>8} {keys:>9} {peak:8.0f} MiB {hwm:8.0f} MiB  {state} {verdict} {cause}",
                          flush=True)
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
