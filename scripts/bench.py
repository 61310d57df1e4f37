#!/usr/bin/env python3
"""Sluice vs Apache Flink on this machine, side by side (BENCHMARKS.md has the method).

Runs each workload on both systems in the same run, alternating, several repetitions, and
prints each figure (median, min, max) and the Sluice/Flink ratio. scripts/bench.sh installs what
this needs (Flink 2.3 from PyPI, Java 17, iperf3) and builds Sluice in release mode first.

  P1  datagen N rows → key by user (100k keys) → 10 s tumbling count+sum → blackhole; p=2;
      checkpoints every 10 s to the local filesystem. Rows/s.
  P2  the same source → filter + projection → blackhole. Rows/s.
  P3  hash shuffle between two taskmanagers, 100-byte rows, against raw loopback TCP
      bandwidth (iperf3). Bytes/s.
  P4  kill -9 of a taskmanager in a running job (a replacement started at once) → time until
      the job runs again with every task RUNNING (output resumes then). Seconds.
  P5  reactive mode (Flink: an application cluster from standalone-job.sh): a second
      taskmanager is started → seconds until the job runs at parallelism 2 everywhere.
  P7  idle taskmanager RSS; cluster start until every taskmanager is registered.
  K1  Kafka source: a topic pre-filled with --kafka-records small JSON records (4 partitions)
      read by a bounded Kafka source at parallelism 1 (one consumer) → blackhole, against a
      raw librdkafka consumer (kafka_bench consume: same librdkafka build, no decoding) on the
      same broker in the same run. Rows/s. --kafka-broker picks the broker (Tansu in memory,
      the default, or noida-db); the table names it. noida-db is faster at 2M records (441k/s
      to a raw consumer against Tansu's 136k/s) but fails fetches at 10M (librdkafka: "Bad
      message format"), so the 10M figure is on Tansu.
  S1  skew: datagen --skew-rows rows (300M; with RocksDB --skew-rocksdb-rows, 100M) where one key carries 50 % of them (the rest over 50k keys) → key
      by user → 10 s tumbling count+sum → blackhole, parallelism 2 on two one-slot
      taskmanagers; Sluice with table.optimizer.agg-phase-strategy ONE_PHASE and TWO_PHASE,
      Flink SQL with TWO_PHASE and mini-batch (allow-latency 1 s, size 10000), each on every
      state backend of --skew-backends (hashmap,rocksdb). Both local phases buffer by memory,
      not by that size: Flink's window local phase holds records in managed memory, Sluice's
      (pane, key) entries in a quarter of the slot's heap budget. Flink reads at most 20M rows
      (its datagen sequence holds its whole range in heap when it opens; 100M run out of heap).
      Rows/s, and the largest over the smallest accumulated busy time of the window's two
      subtasks (read from REST every 0.5 s while the job runs; the same REST field on both).
  G1  PostgreSQL sink: datagen --pg-rows narrow rows (two bigints) → postgres sink, exactly-once
      append (prepared transactions, COPY), parallelism 2, checkpoints every 2 s, against
      `psql \copy` of the same rows from a CSV file into the same table on the same server
      (Debian's PostgreSQL, started here). Rows/s.
  R1  large-state rescale: reactive mode on one-slot taskmanagers, incremental checkpoints
      every 2 s (Sluice: to SeaweedFS, S3, started here; Flink: to file://, as this Flink has no
      S3 plugin), local recovery and snapshot compression on; a continuous count + max over --rescale-keys keys of ~100
      random bytes fed at --rescale-rate rows/s (Flink: random keys, loaded until 3 × keys rows,
      ~95 % of the keys). Once the keys are in, a third taskmanager joins (2 → 3; Sluice stops
      with a checkpoint, Flink restarts from its last one), leaves with SIGTERM (3 → 2), then
      one of the two is killed with SIGKILL (2 → 1). Then the same with hashmap state and a
      tenth of the keys. Per rescale: the pause (Sluice: stop barrier or failure → every task
      running, with its phases, from its rescale history; Flink: while REST, polled every
      20 ms, shows a task not running) and the time from the trigger until every task runs
      (polled alike on both); restarts wait 100 ms.
      R1 also prints its steady-state checkpoints (each after 2 s × the load rate of rows).
  P6  incremental checkpoints after a tenth of the keys changed: R1's RocksDB job and
      storage, with the checkpoint interval at which a tenth of --rescale-keys change between
      checkpoints at each system's rate (Sluice: --rescale-rate; Flink: --p6-flink-rate, a
      rate its datagen sustains here). Once the keys are in, the next three checkpoints: ms,
      and the bytes each uploaded.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("SLUICE_TOOLS_DIR", os.path.expanduser("~/.cache/sluice-tools"))
FLINK_VENV = os.path.join(CACHE, "flink-venv")
EPOCH_MS = 1767225600000
# Both systems' taskmanagers get the same process size (Flink's default, 1728m, left its
# taskmanager in garbage collection until its heartbeat timed out on P1 here).
TM_MEMORY = "4g"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.load(r)
    except Exception:
        return None


def post(url, body, timeout=30):
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def wait(what, timeout, check, every=0.05):
    start = time.time()
    while time.time() - start < timeout:
        v = check()
        if v:
            return v
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class System:
    """What both systems share: Flink's REST paths, on `self.rest`."""

    def registered(self):
        o = get_json(f"http://127.0.0.1:{self.rest}/overview", 1)
        return o["taskmanagers"] if o else None

    def job(self, jid):
        return get_json(f"http://127.0.0.1:{self.rest}/jobs/{jid}")


# ---------------------------------------------------------------- Sluice

class Sluice(System):
    name = "Sluice"

    def __init__(self, bin_dir, work):
        self.bin = bin_dir
        self.work = work
        self.procs = []
        self.tms = []

    def start(self, tms, slots, extra=""):
        self.dir = tempfile.mkdtemp(dir=self.work, prefix="sluice-")
        self.rest = free_port()
        rpc = free_port()
        with open(os.path.join(self.dir, "config.yaml"), "w") as f:
            f.write(
                f"jobmanager.rpc.address: 127.0.0.1\njobmanager.rpc.port: {rpc}\njobmanager.bind-host: 127.0.0.1\n"
                f"rest.address: 127.0.0.1\nrest.bind-address: 127.0.0.1\nrest.port: {self.rest}\n"
                f"taskmanager.host: 127.0.0.1\ntaskmanager.bind-host: 127.0.0.1\n"
                f"taskmanager.numberOfTaskSlots: {slots}\n"
                f"jobmanager.memory.process.size: 1600m\ntaskmanager.memory.process.size: {TM_MEMORY}\n"
                f"execution.checkpointing.dir: file://{self.dir}/checkpoints\n{extra}\n{SLUICE_EXTRA}\n"
            )
        t0 = time.time()
        self.procs.append(self._spawn("jobmanager"))
        for _ in range(tms):
            self.add_tm()
        wait("Sluice taskmanagers", 60, lambda: self.registered() == tms, 0.005)
        return time.time() - t0

    def _spawn(self, kind):
        log = open(os.path.join(self.dir, f"{kind}-{len(self.procs)}.log"), "w")
        return subprocess.Popen(
            [os.path.join(self.bin, kind), "--config-dir", self.dir, "-D", f"metrics.reporter.prom.port={free_port()}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def add_tm(self):
        p = self._spawn("taskmanager")
        self.procs.append(p)
        self.tms.append(p)
        return p

    def tm_pids(self):
        return [p.pid for p in self.tms]

    def submit(self, yaml):
        return post(f"http://127.0.0.1:{self.rest}/jobs", yaml)["jobid"]

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs, self.tms = [], []


def sluice_source(rows, splits=2):
    return f"""sources:
  - id: events
    connector: datagen
    options: {{number-of-rows: {rows}, splits: {splits}}}
    schema:
      - {{name: user_id, type: bigint, expr: "seq % 100000"}}
      - {{name: amount, type: double, expr: "CAST(seq % 100 AS DOUBLE)"}}
      - {{name: ts, type: timestamp, expr: "to_timestamp_millis({EPOCH_MS} + seq % {rows // 2})"}}
    watermark: {{column: ts, max-out-of-orderness: 0 ms}}
"""


def sluice_p1(rows):
    return f"""name: bench-p1
parallelism: 2
{sluice_source(rows)}operators:
  - id: per-user
    input: events
    key-by: [user_id]
    window: {{type: tumbling, size: 10 s}}
    aggregate: {{n: "count(*)", total: "sum(amount)"}}
sinks:
  - {{id: out, input: per-user, connector: blackhole}}
"""


def sluice_p2(rows):
    return f"""name: bench-p2
parallelism: 2
{sluice_source(rows)}operators:
  - {{id: big, input: events, filter: "amount >= 10"}}
  - {{id: proj, input: big, select: {{user_id: user_id, amount2: "amount * 2"}}}}
sinks:
  - {{id: out, input: proj, connector: blackhole}}
"""


def datagen(options, columns, source_id="events"):
    """A job file's `sources:` block: one datagen source with `options` and `columns` as
    (name, type, expr)."""
    schema = "".join(f'      - {{name: {c}, type: {t}, expr: "{e}"}}\n' for c, t, e in columns)
    return f"""sources:
  - id: {source_id}
    connector: datagen
    options: {{{options}}}
    schema:
{schema}"""


def sluice_count_per_key(name, options, columns, key):
    """datagen (`options`, `columns` as (name, type, expr)) → key by `key` → 1 s
    processing-time count per key → blackhole, at parallelism 2 over 2 splits."""
    return f"""name: {name}
parallelism: 2
{datagen(options + ", splits: 2", columns)}operators:
  - id: per-key
    input: events
    key-by: [{key}]
    window: {{type: tumbling, size: 1 s, time: processing}}
    aggregate: {{n: "count(*)"}}
sinks:
  - {{id: out, input: per-key, connector: blackhole}}
"""


def sluice_p3(rows):
    # 100-byte rows: an 8-byte key (1000 distinct, so the aggregation stays cheap and the
    # exchange dominates) and a 92-byte payload, hashed across two taskmanagers.
    return sluice_count_per_key("bench-p3", f"number-of-rows: {rows}",
                                [("k", "bigint", "seq % 1000"), ("payload", "string", "repeat('x', 92)")], "k")


def sluice_unbounded():
    # Two vertices (a hash shuffle), so the sink vertex's records-in show output resuming.
    return sluice_count_per_key("bench-p4", "rows-per-second: 50000",
                                [("user_id", "bigint", "seq % 100000")], "user_id")


SKEW_KEY = "CASE WHEN seq % 2 = 0 THEN 0 ELSE seq % 100000 END"
MINI_BATCH_SIZE = 10000


# Lines `--sluice-config` adds to every Sluice cluster's config.yaml.
SLUICE_EXTRA = ""

def sluice_skew(rows, strategy):
    return f"""name: bench-s1-{strategy.lower().replace('_', '-')}
parallelism: 2
config: {{table.optimizer.agg-phase-strategy: {strategy}}}
sources:
  - id: events
    connector: datagen
    options: {{number-of-rows: {rows}, splits: 2}}
    schema:
      - {{name: user_id, type: bigint, expr: "{SKEW_KEY}"}}
      - {{name: amount, type: double, expr: "CAST(seq % 100 AS DOUBLE)"}}
      - {{name: ts, type: timestamp, expr: "to_timestamp_millis({EPOCH_MS} + (seq % {rows // 2}) / 100)"}}
    watermark: {{column: ts, max-out-of-orderness: 0 ms}}
operators:
  - id: per-user
    input: events
    key-by: [user_id]
    window: {{type: tumbling, size: 10 s}}
    aggregate: {{n: "count(*)", total: "sum(amount)"}}
sinks:
  - {{id: out, input: per-user, connector: blackhole}}
"""


# ---------------------------------------------------------------- Flink

class Flink(System):
    name = "Flink"

    def __init__(self, work):
        site = subprocess.check_output(
            [os.path.join(FLINK_VENV, "bin", "python"), "-c", "import pyflink, os; print(os.path.dirname(pyflink.__file__))"],
            text=True).strip()
        self.home = site
        self.work = work
        self.python = os.path.join(FLINK_VENV, "bin", "python")

    def env(self):
        e = dict(os.environ, FLINK_HOME=self.home, FLINK_CONF_DIR=self.conf, FLINK_LOG_DIR=os.path.join(self.dir, "log"))
        return e

    def _configure(self, slots, extra):
        self.dir = tempfile.mkdtemp(dir=self.work, prefix="flink-")
        self.conf = os.path.join(self.dir, "conf")
        os.makedirs(os.path.join(self.dir, "log"))
        shutil.copytree(os.path.join(self.home, "conf"), self.conf)
        self.rest = free_port()
        with open(os.path.join(self.conf, "config.yaml")) as f:
            text = f.read()
        text = text.replace("numberOfTaskSlots: 1", f"numberOfTaskSlots: {slots}")
        text = text.replace("size: 1728m", f"size: {TM_MEMORY}")
        # REST answers from a cache of the job's graph that lives 3 s by default: a polled
        # outage or rescale would be read up to 3 s late.
        text += (f"\nrest.port: {self.rest}\nrest.address: 127.0.0.1\nrest.cache.execution-graph.timeout: 0 ms\n"
                 f"execution.checkpointing.dir: file://{self.dir}/checkpoints\n"
                 f"python.client.executable: {self.python}\npython.executable: {self.python}\n{extra}\n")
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            f.write(text)

    def start(self, tms, slots, extra=""):
        self._configure(slots, extra)
        with open(os.path.join(self.conf, "workers"), "w") as f:
            f.write("localhost\n" * tms)
        t0 = time.time()
        subprocess.run([os.path.join(self.home, "bin", "start-cluster.sh")], env=self.env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        wait("Flink taskmanagers", 180, lambda: self.registered() == tms, 0.05)
        return time.time() - t0

    def start_application(self, tms, slots, extra, sql):
        """An application cluster (`standalone-job.sh`) running the SQL job, the only
        deployment Flink's reactive mode supports; returns the job id."""
        self._configure(slots, extra)
        path = os.path.join(self.dir, "job.sql")
        with open(path, "w") as f:
            f.write(sql)
        subprocess.run([os.path.join(self.home, "bin", "standalone-job.sh"), "start", "-py",
                        os.path.join(HOME, "scripts", "bench_flink_sql.py"), path, "application"],
                       env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        for _ in range(tms):
            self.add_tm()
        o = wait("the Flink application's job", 180,
                 lambda: (lambda o: o if o and o["jobs"] else None)(get_json(f"http://127.0.0.1:{self.rest}/jobs/overview")), 0.1)
        return o["jobs"][0]["jid"]

    def tm_pids(self):
        out = subprocess.run(["pgrep", "-f", f"TaskManagerRunner.*{self.conf}"], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def add_tm(self):
        subprocess.run([os.path.join(self.home, "bin", "taskmanager.sh"), "start"], env=self.env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    def submit(self, sql):
        path = os.path.join(self.dir, f"job-{time.time_ns()}.sql")
        with open(path, "w") as f:
            f.write(sql)
        before = {j["jid"] for j in (get_json(f"http://127.0.0.1:{self.rest}/jobs/overview") or {"jobs": []})["jobs"]}
        log = open(path + ".log", "w")
        self.client = subprocess.Popen([self.python, os.path.join(HOME, "scripts", "bench_flink_sql.py"), path, str(self.rest)],
                                       env=self.env(), stdout=log, stderr=subprocess.STDOUT)

        def new_job():
            o = get_json(f"http://127.0.0.1:{self.rest}/jobs/overview")
            ids = [j["jid"] for j in (o or {"jobs": []})["jobs"] if j["jid"] not in before]
            return ids[0] if ids else None
        return wait("the Flink job to be submitted", 120, new_job, 0.1)

    def stop(self):
        for command in (["stop-cluster.sh"], ["standalone-job.sh", "stop"]):
            subprocess.run([os.path.join(self.home, "bin", command[0])] + command[1:],
                           env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in self.tm_pids():
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", f"StandaloneSessionClusterEntrypoint.*{self.conf}"])
        if getattr(self, "client", None) and self.client.poll() is None:
            self.client.kill()
        # The next measurement must not share the CPUs with JVMs still shutting down.
        gone = lambda: subprocess.run(["pgrep", "-f", self.dir], capture_output=True).returncode != 0
        try:
            wait("Flink's processes to exit", 30, gone, 0.2)
        except RuntimeError:
            subprocess.run(["pkill", "-9", "-f", self.dir])
        time.sleep(2)


def flink_source(rows):
    return f"""CREATE TABLE src (
  seq BIGINT,
  user_id AS seq % 100000,
  amount AS CAST(seq % 100 AS DOUBLE),
  ts AS TO_TIMESTAMP_LTZ({EPOCH_MS} + seq % {rows // 2}, 3),
  WATERMARK FOR ts AS ts
) WITH ('connector' = 'datagen', 'rows-per-second' = '1000000000',
        'fields.seq.kind' = 'sequence', 'fields.seq.start' = '0', 'fields.seq.end' = '{rows - 1}');
"""


def flink_p1(rows):
    return flink_source(rows) + """CREATE TABLE sink (user_id BIGINT, window_start TIMESTAMP(3), n BIGINT, total DOUBLE)
  WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT user_id, window_start, COUNT(*), SUM(amount)
  FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '10' SECOND))
  GROUP BY user_id, window_start, window_end;
"""


# Flink's datagen sequence holds its whole range in a queue when it opens (SequenceGenerator):
# 100M rows run out of heap, so Flink's S1 reads at most this many (its rate is per row).
FLINK_SEQUENCE_ROWS = 20_000_000


def flink_skew(rows):
    return f"""SET 'table.optimizer.agg-phase-strategy' = 'TWO_PHASE';
SET 'table.exec.mini-batch.enabled' = 'true';
SET 'table.exec.mini-batch.allow-latency' = '1 s';
SET 'table.exec.mini-batch.size' = '{MINI_BATCH_SIZE}';
CREATE TABLE src (
  seq BIGINT,
  user_id AS {SKEW_KEY},
  amount AS CAST(seq % 100 AS DOUBLE),
  ts AS TO_TIMESTAMP_LTZ({EPOCH_MS} + (seq % {rows // 2}) / 100, 3),
  WATERMARK FOR ts AS ts
) WITH ('connector' = 'datagen', 'rows-per-second' = '1000000000',
        'fields.seq.kind' = 'sequence', 'fields.seq.start' = '0', 'fields.seq.end' = '{rows - 1}');
CREATE TABLE sink (user_id BIGINT, window_start TIMESTAMP(3), n BIGINT, total DOUBLE)
  WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT user_id, window_start, COUNT(*), SUM(amount)
  FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '10' SECOND))
  GROUP BY user_id, window_start, window_end;
"""


def flink_p2(rows):
    return flink_source(rows) + """CREATE TABLE sink (user_id BIGINT, amount2 DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT user_id, amount * 2 FROM src WHERE amount >= 10;
"""


def flink_unbounded():
    return """CREATE TABLE src (user_id BIGINT, pt AS PROCTIME())
  WITH ('connector' = 'datagen', 'rows-per-second' = '50000', 'fields.user_id.min' = '0', 'fields.user_id.max' = '99999');
CREATE TABLE sink (user_id BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT user_id, COUNT(*) FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(pt), INTERVAL '1' SECOND))
  GROUP BY user_id, window_start, window_end;
"""


# ---------------------------------------------------------------- runs

# Restarts that never give up, 1 s apart, on both systems.
RESTARTS = ("restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 2147483647\n"
            "restart-strategy.fixed-delay.delay: 1 s\n")


KAFKA_PARTITIONS = 4


class KafkaBroker:
    """A Kafka-protocol broker on 127.0.0.1 for K1: Tansu (in memory) or noida-db."""

    def __init__(self, kind, work):
        self.kind = kind
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        log = open(os.path.join(work, f"{kind}.log"), "w")
        if kind == "tansu":
            url = f"tcp://{self.bootstrap}"
            cmd = [os.environ.get("SLUICE_TANSU_BIN", "tansu"), "broker", "--listener-url", url,
                   "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        else:
            data = tempfile.mkdtemp(dir=work, prefix="noida-")
            cmd = [os.environ.get("SLUICE_KAFKA_BIN", "noida-db"), "start", "--data-dir", data, "--host",
                   "127.0.0.1", "--only", "kafka", "--kafka-port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait(f"the {kind} broker", 30, lambda: port_open(self.port))

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)


class PgServer:
    """Debian's PostgreSQL on 127.0.0.1 in a fresh cluster (as the postgres user when root)."""

    def __init__(self, work):
        bins = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))
                      if os.path.exists(os.path.join(d, "initdb")))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (scripts/deps.sh postgres)")
        self.bin = bins[-1]
        self.dir = tempfile.mkdtemp(dir=work, prefix="pg-")
        os.chmod(work, 0o755)
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        os.mkdir(self.data)
        self.user = []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            self.user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(self.user + [os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                                    "--no-sync"], check=True, capture_output=True)
        self.port = free_port()
        log = open(os.path.join(self.dir, "postgres.log"), "w")
        self.proc = subprocess.Popen(self.user + [
            os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port), "-k", self.data,
            "-c", "listen_addresses=127.0.0.1", "-c", "max_prepared_transactions=64", "-c", "fsync=off",
            "-c", "synchronous_commit=off"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait("PostgreSQL", 30, lambda: self.psql("SELECT 1", check=False).returncode == 0, 0.2)

    def psql(self, sql, check=True):
        return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-XAtq", "-c", sql],
                              capture_output=True, text=True, check=check)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pg_copy_rate(pg, rows, work):
    """Rows/s of `psql \copy` of `rows` narrow rows from a CSV file."""
    path = os.path.join(work, "narrow.csv")
    if not os.path.exists(path):
        with open(path, "w") as f:
            for i in range(0, rows, 100_000):
                f.write("".join(f"{j},{j % 7}\n" for j in range(i, min(rows, i + 100_000))))
    pg.psql("TRUNCATE narrow")
    t0 = time.time()
    pg.psql(f"\\copy narrow FROM '{path}' WITH (FORMAT csv)")
    secs = time.time() - t0
    return rows / secs


def sluice_pg(pg, rows):
    return f"""name: bench-g1
parallelism: 2
{datagen(f"number-of-rows: {rows}, splits: 2", [("seq", "bigint", "seq"), ("v", "bigint", "seq % 7")], "rows")}sinks:
  - id: out
    input: rows
    connector: postgres
    options:
      url: "jdbc:postgresql://127.0.0.1:{pg.port}/postgres"
      table-name: narrow
      username: postgres
      sink.delivery-guarantee: exactly-once
      sink.buffer-flush.max-rows: "50000"
"""


def kafka_bench(bin_dir, *args):
    out = subprocess.run([os.path.join(bin_dir, "kafka_bench"), *map(str, args)], capture_output=True, text=True,
                         timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return json.loads(out.stdout)


def sluice_kafka(bootstrap, topic, counts):
    stops = ";".join(f"partition:{p},offset:{c}" for p, c in enumerate(counts))
    # SLUICE_K1_PROPERTIES=k=v,k=v: client properties for the job (KAFKA_BENCH_PROPERTIES is
    # the raw consumer's), to compare librdkafka settings side by side.
    extra = "".join(f"      properties.{kv.split('=', 1)[0].strip()}: \"{kv.split('=', 1)[1].strip()}\"\n"
                    for kv in os.environ.get("SLUICE_K1_PROPERTIES", "").split(",") if "=" in kv)
    return f"""name: bench-k1
parallelism: 1
sources:
  - id: events
    connector: kafka
    options:
      topic: {topic}
      properties.bootstrap.servers: "{bootstrap}"
      scan.startup.mode: earliest-offset
      scan.bounded.mode: specific-offsets
      scan.bounded.specific-offsets: "{stops}"
      format: json
{extra}    schema:
      - {{name: user, type: string}}
      - {{name: v, type: bigint}}
      - {{name: ts, type: bigint}}
sinks:
  - {{id: out, input: events, connector: blackhole}}
"""


def job_seconds(system, jid, timeout, on_poll=None, every=0.2):
    """The finished job's duration; `on_poll` is called on every poll while it runs."""
    def ended():
        if on_poll:
            on_poll()
        j = system.job(jid)
        return j if j and j["state"] in ("FINISHED", "FAILED", "CANCELED") else None
    j = wait(f"{system.name} job {jid} to finish", timeout, ended, every)
    if j["state"] != "FINISHED":
        raise RuntimeError(f"{system.name} job {jid} ended {j['state']}")
    return j["duration"] / 1000.0


def throughput(system, job_text, rows, timeout):
    system.start(1, 2, "execution.checkpointing.interval: 10 s\nrestart-strategy.type: none")
    try:
        return rows / job_seconds(system, system.submit(job_text), timeout)
    finally:
        system.stop()


def window_busy(system, jid):
    """The accumulated busy times (ms) of the subtasks of the job's window vertex: Sluice's
    holds `per-user`, Flink's its (global) window aggregate."""
    j = system.job(jid)
    for v in (j or {}).get("vertices", []):
        name = v["name"]
        if name.startswith("per-user") or ("WindowAggregate" in name and "Local" not in name):
            d = get_json(f"http://127.0.0.1:{system.rest}/jobs/{jid}/vertices/{v['id']}")
            if d:
                return [float(t["metrics"]["accumulated-busy-time"]) for t in d["subtasks"]]
    return None


def skew(system, text, rows, backend):
    """Rows/s of the skew job on two one-slot taskmanagers and the window subtasks' largest
    over smallest busy time, as last read while the job ran."""
    # Sluice's busy times reach REST with the heartbeats: every second here, so a job of a few
    # seconds is read several times. Flink reports final figures for a finished job.
    system.start(2, 1, "execution.checkpointing.interval: 10 s\nrestart-strategy.type: none\nheartbeat.interval: 1 s\n"
                 f"state.backend.type: {backend}")
    try:
        jid = system.submit(text)
        last = [None]

        def read_busy():
            busy = window_busy(system, jid)
            if busy and min(busy) > 0:
                last[0] = busy
        secs = job_seconds(system, jid, 1800, read_busy, 0.5)
        read_busy()
        busy = last[0]
        return rows / secs, (max(busy) / min(busy) if busy else float("nan"))
    finally:
        system.stop()


def sink_records(system, jid):
    j = system.job(jid)
    if not j or j["state"] != "RUNNING":
        return None
    vs = j["vertices"]
    if not all(v["status"] == "RUNNING" for v in vs):
        return None
    return vs[-1]["metrics"]["read-records"]


def recovery(system, job_text):
    """kill -9 of the taskmanager running half of the job, replacement started at once;
    seconds until every task runs again."""
    system.start(2, 1, "execution.checkpointing.interval: 2 s\n" + RESTARTS)
    try:
        jid = system.submit(job_text)
        wait("records flowing", 120, lambda: (sink_records(system, jid) or 0) > 0, 0.2)
        time.sleep(3)
        victim = system.tm_pids()[-1]
        t0 = time.time()
        os.kill(victim, signal.SIGKILL)
        system.add_tm()
        # Down first (the failure must have been noticed), then up with records again.
        wait("the failure noticed", 120, lambda: sink_records(system, jid) is None, 0.02)
        # Record counts in REST lag by a heartbeat (Sluice) or the metric fetcher (Flink), 10 s
        # by default on both; every task RUNNING again is when output resumes.
        wait("all tasks running again", 180, lambda: sink_records(system, jid) is not None, 0.02)
        return time.time() - t0
    finally:
        system.stop()


def vertices_at(system, jid, parallelism):
    return running_at(system.job(jid), parallelism)


REACTIVE = "scheduler-mode: reactive\nexecution.checkpointing.interval: 2 s\n" + RESTARTS
# Flink's adaptive scheduler waits 30 s after a rescale (the job's start counts) and up to 60 s
# for resources to settle by default; both are set to zero so it rescales as soon as it can.
# It still rescales at the next completed checkpoint (FLIP-461), at most the 2 s interval later.
FLINK_REACTIVE = ("jobmanager.adaptive-scheduler.executing.cooldown-after-rescaling: 0 s\n"
                  "jobmanager.adaptive-scheduler.executing.resource-stabilization-timeout: 0 s\n")


def scale_up(system, job_text):
    """Reactive mode, one 1-slot taskmanager running the job at parallelism 1; a second one is
    started → seconds until every vertex runs at parallelism 2. The time includes the new
    taskmanager's own start, as an operator would see it."""
    if isinstance(system, Sluice):
        system.start(1, 1, REACTIVE)
        jid = system.submit(job_text)
    else:
        jid = system.start_application(1, 1, REACTIVE + FLINK_REACTIVE, job_text)
    try:
        wait("the job running at parallelism 1", 180, lambda: vertices_at(system, jid, 1), 0.1)
        time.sleep(5)
        t0 = time.time()
        system.add_tm()
        wait("the job running at parallelism 2", 180, lambda: vertices_at(system, jid, 2), 0.02)
        return time.time() - t0
    finally:
        system.stop()


class Seaweed:
    """SeaweedFS (`weed mini`, as the tests start it) on 127.0.0.1: the S3 checkpoint storage."""
    KEY, SECRET, BUCKET = "sluice-bench-key", "sluice-bench-secret", "sluice"

    def __init__(self, work):
        self.dir = tempfile.mkdtemp(dir=work, prefix="weed-")
        for sub in ("data", "logs"):
            os.mkdir(os.path.join(self.dir, sub))
        port = free_port()
        weed = os.environ.get("SLUICE_WEED_BIN") or os.path.expanduser("~/.cache/sluice-tools/venv/bin/weed")
        args = [weed if os.path.exists(weed) else "weed", f"-logdir={self.dir}/logs", "mini", f"-dir={self.dir}/data",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
                "-master.telemetry.url=http://127.0.0.1:1/", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={self.BUCKET}", f"-s3.port={port}"]
        args += [f"-{f}={free_port()}" for f in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                                                 "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port",
                                                 "debug.port")]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.KEY, AWS_SECRET_ACCESS_KEY=self.SECRET)
        self.proc = subprocess.Popen(args, stdout=open(os.path.join(self.dir, "weed.log"), "w"),
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{port}"
        wait("SeaweedFS", 60, lambda: port_open(port), 0.2)
        time.sleep(1)  # the bucket comes shortly after the port

    def config(self):
        return (f"s3.endpoint: {self.endpoint}\ns3.access-key: {self.KEY}\ns3.secret-key: {self.SECRET}\n"
                f"s3.path.style.access: true\nexecution.checkpointing.dir: s3://{self.BUCKET}/checkpoints-{time.time_ns()}\n")

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)


def sluice_large_state(keys, rate):
    """`keys` keys, each holding a count and the max of a ~90-byte random string (random, so
    RocksDB's compression does not shrink it), fed at `rate` rows/s."""
    payload = "concat(" + ", ".join(["CAST(random() AS VARCHAR)"] * 5) + ")"
    columns = [("k", "bigint", f"seq % {keys}"), ("payload", "string", payload)]
    return f"""name: bench-r1
{datagen(f"rows-per-second: {rate}, splits: 6", columns)}operators:
  - id: per-key
    input: events
    key-by: [k]
    aggregate: {{n: "count(*)", p: "max(payload)"}}
sinks:
  - {{id: out, input: per-key, connector: blackhole}}
"""


def flink_large_state(keys, rate):
    """Flink SQL's side of R1: the same count + max of a 90-character random string per key.
    Its keys are random in [0, keys): the datagen sequence holds its whole range in heap when
    it opens, then ends (a bounded job does not rescale)."""
    return f"""CREATE TABLE events (k BIGINT, payload STRING) WITH ('connector' = 'datagen',
  'rows-per-second' = '{rate}', 'fields.k.min' = '0', 'fields.k.max' = '{keys - 1}',
  'fields.payload.length' = '90');
CREATE TABLE out_ (k BIGINT, n BIGINT, p STRING) WITH ('connector' = 'blackhole');
INSERT INTO out_ SELECT k, COUNT(*), MAX(payload) FROM events GROUP BY k;
"""


def dir_bytes(path, prefix):
    total = 0
    for root, _, files in os.walk(path):
        # An instance's live files (its db/), not the hard links of its checkpoint directories
        # nor Flink's local recovery copies.
        if prefix in root and root.endswith("/db") and "localState" not in root:
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
    return total


def running_at(j, parallelism):
    """Whether the job (REST /jobs/:jid) runs with every vertex RUNNING at `parallelism`."""
    return bool(j and j["state"] == "RUNNING"
                and all(v["parallelism"] == parallelism and v["status"] == "RUNNING" for v in j["vertices"]))


def outage(system, jid, before, after, trigger, timeout=600):
    """Polls the job every 20 ms from `trigger()`: ms from the trigger, and from the first poll
    with a task not running at `before` (the outage as REST shows it), until every vertex
    runs at `after`. Measured alike on both systems."""
    t0 = time.time()
    trigger()
    down = None
    while time.time() - t0 < timeout:
        j = system.job(jid)
        now = time.time()
        # No answer counts as down: Flink's REST may not answer for the job while it restarts.
        if down is None and not running_at(j, before):
            down = now
        if down is not None and running_at(j, after):
            return {"from_trigger_ms": round((now - t0) * 1000), "tasks_down_ms": round((now - down) * 1000)}
        time.sleep(0.02)
    raise RuntimeError(f"{system.name} job {jid} did not run at parallelism {after} within {timeout} s")


def load_large(system, job_text, keys, backend, s3, tmp, interval="2 s", sluice_extra=""):
    """Starts the large-state job in reactive mode on two 1-slot taskmanagers with incremental
    checkpoints every `interval` (Sluice: to S3, or file:// without `s3`; Flink, which has no
    S3 plugin here: to file://), local recovery and snapshot compression on, working under `tmp`, and waits until the
    keys are in (`sluice_extra`: lines for Sluice's config only). Returns the job id and the rows/s
    it loaded at."""
    # A lost taskmanager's restart waits 100 ms, not 1 s (both systems alike).
    conf = (REACTIVE.replace("delay: 1 s", "delay: 100 ms").replace("interval: 2 s", f"interval: {interval}")
            + f"state.backend.type: {backend}\n"
            "execution.checkpointing.incremental: true\nexecution.checkpointing.local-backup.enabled: true\n"
            f"execution.state-recovery.from-local: true\nio.tmp.dirs: {tmp}\n"
            # Full (heap) snapshots compressed per key group, as both systems offer it.
            "execution.checkpointing.snapshot-compression: true\n")
    if isinstance(system, Sluice):
        # Heartbeats every second bring each rescale's first record after to its record soon
        # (Sluice notices a lost taskmanager by its broken stream, not by the heartbeat).
        system.start(2, 1, conf + "heartbeat.interval: 1 s\n" + sluice_extra + (s3.config() if s3 else ""))
        jid = system.submit(job_text)
        rows = keys * 1.2
    else:
        jid = system.start_application(2, 1, conf + FLINK_REACTIVE, job_text)
        rows = keys * 3  # random keys: 95 % of them are in after 3 × keys rows
    wait("the job running at parallelism 2", 180, lambda: vertices_at(system, jid, 2), 0.1)
    t0 = time.time()

    def loaded():
        j = system.job(jid)
        return j and j["vertices"][1]["metrics"]["read-records"] >= rows
    wait(f"{keys:,} keys loaded", 1800, loaded, 1)
    return jid, rows / (time.time() - t0)


def completed_checkpoints(system, jid, n):
    """The newest `n` completed checkpoints: (ms, bytes) each."""
    cps = get_json(f"http://127.0.0.1:{system.rest}/jobs/{jid}/checkpoints") or {}
    done = [c for c in cps.get("history", []) if c.get("status") == "COMPLETED"][:n]
    return [(c["end_to_end_duration"], c["checkpointed_size"]) for c in done]


def rescale_large(system, job_text, keys, backend, s3):
    """`load_large` with checkpoints every 2 s, then: a third taskmanager joins (2 → 3;
    Sluice stops with a checkpoint, Flink restarts from its last one), it leaves with SIGTERM
    (3 → 2), then one of the two is killed with SIGKILL (2 → 1, the survivor's part restored
    from its local copies). Returns the state's size, the load rate, the steady-state
    checkpoints and, per rescale, the outage as polled from REST (both systems) merged with
    Sluice's rescale record (pause and phases)."""
    # Short: Flink names RocksDB's log file after the instance's whole path, within 255 bytes.
    tmp = tempfile.mkdtemp(prefix="r1-")
    sluice = isinstance(system, Sluice)
    try:
        # Sluice keeps standby copies of the whole job's SST files on every taskmanager (its own
        # option; Flink has none), so a failover restores the lost one's key groups locally.
        jid, rate = load_large(system, job_text, keys, backend, s3, tmp,
                               sluice_extra="execution.state-recovery.standby-copies: true\n")
        time.sleep(6)  # checkpoints complete with every key in them
        size = dir_bytes(tmp, "sluice-rocksdb-" if sluice else "job_") if backend == "rocksdb" else None
        # The steady-state checkpoints now (each after interval × rate rows changed).
        checkpoints = completed_checkpoints(system, jid, 3)
        pids = system.tm_pids()
        steps = [(2, 3, system.add_tm), (3, 2, lambda: os.kill(max(system.tm_pids()), signal.SIGTERM)),
                 # kill -9 of one of the two: the survivor restores its part from its local copies.
                 (2, 1, lambda: os.kill(pids[1], signal.SIGKILL))]
        records = []
        for n, (before, after, trigger) in enumerate(steps, 1):
            r = outage(system, jid, before, after, trigger)
            if sluice:
                wait(f"rescale {n} in the history", 60, lambda: system.job(jid)["rescales"]["count"] >= n, 0.05)
                # The first record after it comes with a heartbeat (every second): wait up to 5 s.
                deadline = time.time() + 5
                while True:
                    rec = system.job(jid)["rescales"]["history"][n - 1]
                    if rec.get("phases", {}).get("first_record_ms") is not None or time.time() > deadline:
                        break
                    time.sleep(0.2)
                r.update(rec)
            records.append(r)
            time.sleep(8)
        return size, rate, checkpoints, records
    finally:
        system.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_after_a_tenth(system, job_text, keys, rate, s3):
    """P6: `load_large` with RocksDB and the checkpoint interval at which a tenth of the keys
    change between checkpoints at `rate` rows/s; once the keys are in, the next three
    checkpoints. Returns the interval in seconds, the load rate and [(ms, bytes)]."""
    interval = max(1.0, keys * 0.1 / rate)
    tmp = tempfile.mkdtemp(prefix="p6-")
    try:
        jid, loaded_at = load_large(system, job_text, keys, "rocksdb", s3, tmp, f"{round(interval * 1000)} ms")
        time.sleep(interval * 3.5)
        return interval, loaded_at, completed_checkpoints(system, jid, 3)
    finally:
        system.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def idle(system):
    started = system.start(2, 2)
    try:
        time.sleep(3)
        return started, max(rss_mb(p) for p in system.tm_pids())
    finally:
        system.stop()


def loopback_bandwidth():
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "5", "-J"], capture_output=True, text=True)
    server.wait(10)
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 8


def summary(values):
    v = [x for x in values if x == x]
    if not v:
        return "n/a"
    d = 2 if statistics.median(v) < 10 else 1
    return f"{statistics.median(v):,.{d}f} (min {min(v):,.{d}f}, max {max(v):,.{d}f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--only", default="P1,P2,P3,P4,P5,P7,K1,G1,S1,R1,P6")
    ap.add_argument("--sluice-bin", required=True)
    ap.add_argument("--no-flink", action="store_true")
    ap.add_argument("--no-sluice", action="store_true", help="Flink's figures only (no ratios)")
    ap.add_argument("--kafka-records", type=int, default=10_000_000)
    ap.add_argument("--kafka-broker", choices=["tansu", "noida"], default="tansu")
    ap.add_argument("--pg-rows", type=int, default=5_000_000)
    ap.add_argument("--skew-rows", type=int, default=300_000_000,
                    help="S1's rows (more than --rows: Sluice's run must outlast its start-up)")
    ap.add_argument("--skew-rocksdb-rows", type=int, default=100_000_000,
                    help="S1's rows with the rocksdb backend (its ONE_PHASE reads ~1M rows/s)")
    ap.add_argument("--skew-backends", default="hashmap,rocksdb", help="S1's state backends")
    ap.add_argument("--skew-strategies", default="ONE_PHASE,TWO_PHASE",
                    help="S1's agg-phase strategies on Sluice (one alone, e.g. to profile it)")
    ap.add_argument("--rescale-keys", type=int, default=10_000_000,
                    help="R1's RocksDB keys (~100 bytes each); the heap run takes a tenth")
    ap.add_argument("--rescale-backends", default="rocksdb,hashmap", help="R1's state backends")
    ap.add_argument("--rescale-rate", type=int, default=400_000, help="R1's source rows/s")
    ap.add_argument("--rescale-storage", choices=["s3", "file"], default="s3",
                    help="R1's and P6's checkpoint storage for Sluice (Flink's is file:// either way)")
    ap.add_argument("--p6-flink-rate", type=int, default=30_000,
                    help="P6's rows/s on Flink (its datagen sustains ~33k/s of R1's rows here)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    ap.add_argument("--sluice-config", action="append", default=[], metavar="'KEY: VALUE'",
                    help="a line added to every Sluice cluster's config.yaml (for A/B runs); repeatable")
    args = ap.parse_args()
    global SLUICE_EXTRA
    SLUICE_EXTRA = "\n".join(args.sluice_config)
    only = set(args.only.split(","))
    work = tempfile.mkdtemp(prefix="sluice-bench-")
    systems = [] if args.no_sluice else [Sluice(args.sluice_bin, work)]
    if not args.no_flink:
        try:
            systems.append(Flink(work))
        except Exception as e:
            print(f"Flink unavailable ({e}); printing Sluice's figures only", flush=True)
    results = {}
    kafka = None
    if "K1" in only:
        try:
            kafka = KafkaBroker(args.kafka_broker, work)
            filled = kafka_bench(args.sluice_bin, "fill", kafka.bootstrap, "k1", KAFKA_PARTITIONS, args.kafka_records)
            print(f"K1: {args.kafka_records:,} records into {KAFKA_PARTITIONS} partitions of {args.kafka_broker} "
                  f"({args.kafka_records / filled['seconds']:,.0f} records/s produced)", flush=True)
            kafka.counts = filled["per_partition"]
        except Exception as e:
            print(f"K1 unavailable: {e}", flush=True)
            if kafka:
                kafka.stop()
            kafka = None

    pg = None
    if "G1" in only:
        try:
            pg = PgServer(work)
            pg.psql("CREATE TABLE narrow (seq bigint, v bigint)")
        except Exception as e:
            print(f"G1 unavailable: {e}", flush=True)
            pg = None

    def record(key, system, value):
        results.setdefault(key, {}).setdefault(system.name, []).append(value)
        print(f"  {key:<28} {system.name:<7} {value:,.2f}", flush=True)

    for rep in range(1, args.reps + 1):
        print(f"== repetition {rep}/{args.reps}", flush=True)
        order = systems if rep % 2 else list(reversed(systems))
        for s in order:
            try:
                if "P1" in only:
                    text = sluice_p1(args.rows) if isinstance(s, Sluice) else flink_p1(args.rows)
                    record("P1 window rows/s", s, throughput(s, text, args.rows, 1800))
                if "P2" in only:
                    text = sluice_p2(args.rows) if isinstance(s, Sluice) else flink_p2(args.rows)
                    record("P2 filter rows/s", s, throughput(s, text, args.rows, 1800))
                if "P3" in only and isinstance(s, Sluice):
                    # 2 × rows (40M rows, 4 GB by default), so deployment and start-up are a
                    # small part of the job's duration.
                    s.start(2, 1)
                    try:
                        secs = job_seconds(s, s.submit(sluice_p3(args.rows * 2)), 1800)
                    finally:
                        s.stop()
                    record("P3 shuffle MB/s (100 B rows)", s, args.rows * 2 * 100 / secs / 1e6)
                for backend in (args.skew_backends.split(",") if "S1" in only else []):
                    rows = args.skew_rows if backend == "hashmap" else args.skew_rocksdb_rows
                    if isinstance(s, Sluice):
                        runs = [(strategy, sluice_skew(rows, strategy)) for strategy in args.skew_strategies.split(",")]
                    else:
                        rows = min(rows, FLINK_SEQUENCE_ROWS)
                        runs = [("TWO_PHASE", flink_skew(rows))]
                    for strategy, text in runs:
                        rate, ratio = skew(s, text, rows, backend)
                        record(f"S1 skew {strategy} {backend} rows/s", s, rate)
                        record(f"S1 skew {strategy} {backend} busy max/min", s, ratio)
                if "P4" in only:
                    text = sluice_unbounded() if isinstance(s, Sluice) else flink_unbounded()
                    record("P4 recovery s", s, recovery(s, text))
                if "R1" in only:
                    s3 = Seaweed(work) if isinstance(s, Sluice) and args.rescale_storage == "s3" else None
                    try:
                        backends = (("rocksdb", args.rescale_keys), ("hashmap", args.rescale_keys // 10))
                        for backend, keys in (b for b in backends if b[0] in args.rescale_backends.split(",")):
                            text = (sluice_large_state if isinstance(s, Sluice) else flink_large_state)(
                                keys, args.rescale_rate)
                            size, rate, cps, steps = rescale_large(s, text, keys, backend, s3)
                            print(f"  R1 {backend} {s.name}: {keys:,} keys loaded at {rate:,.0f} rows/s"
                                  + (f", {size / 1e6:,.0f} MB of RocksDB files" if size else ""), flush=True)
                            changed = min(1.0, rate * 2 / keys)
                            print(f"  R1 {backend} {s.name}: steady checkpoints after ~{changed:.0%} of the keys "
                                  f"changed (ms, bytes uploaded): {cps}", flush=True)
                            for name, r in zip(("2->3", "3->2", "kill -9 2->1"), steps):
                                print(f"  R1 {backend} {name} {s.name}: {json.dumps(r)}", flush=True)
                                # The pause: Sluice's from its stop barrier or failure (its history),
                                # Flink's while REST shows a task not running (it restarts from its
                                # last checkpoint, so its replay comes on top).
                                record(f"R1 rescale {name} {backend} pause ms", s, r.get("pause_ms", r["tasks_down_ms"]))
                                record(f"R1 rescale {name} {backend} until running ms", s, r["from_trigger_ms"])
                    finally:
                        if s3:
                            s3.stop()
                if "P6" in only:
                    sluice = isinstance(s, Sluice)
                    s3 = Seaweed(work) if sluice and args.rescale_storage == "s3" else None
                    try:
                        rate = args.rescale_rate if sluice else args.p6_flink_rate
                        text = (sluice_large_state if sluice else flink_large_state)(args.rescale_keys, rate)
                        interval, loaded_at, cps = checkpoint_after_a_tenth(s, text, args.rescale_keys, rate, s3)
                        print(f"  P6 {s.name}: {args.rescale_keys:,} keys loaded at {loaded_at:,.0f} rows/s "
                              f"(configured {rate:,}); checkpoints every {interval:.1f} s "
                              f"(ms, bytes uploaded): {cps}", flush=True)
                        for ms, _ in cps:
                            record("P6 checkpoint after a tenth changed ms", s, ms)
                    finally:
                        if s3:
                            s3.stop()
                if "P5" in only:
                    text = sluice_unbounded() if isinstance(s, Sluice) else flink_unbounded()
                    record("P5 reactive scale-up s", s, scale_up(s, text))
                if kafka and isinstance(s, Sluice):
                    try:
                        raw = kafka_bench(args.sluice_bin, "consume", kafka.bootstrap, "k1",
                                          ",".join(map(str, kafka.counts)))
                        key = f"K1 kafka source rows/s ({args.kafka_broker})"
                        results.setdefault(key, {}).setdefault("rdkafka", []).append(raw["records"] / raw["seconds"])
                        print(f"  {key:<28} rdkafka {raw['records'] / raw['seconds']:,.2f}", flush=True)
                        s.start(1, 1, "restart-strategy.type: none")
                        try:
                            secs = job_seconds(s, s.submit(sluice_kafka(kafka.bootstrap, "k1", kafka.counts)), 1800)
                        finally:
                            s.stop()
                        record(key, s, sum(kafka.counts) / secs)
                    except Exception as e:
                        print(f"  K1: {e}", flush=True)
                        s.stop()
                if pg and isinstance(s, Sluice):
                    key = "G1 postgres EO sink rows/s"
                    copy = pg_copy_rate(pg, args.pg_rows, work)
                    results.setdefault(key, {}).setdefault("psql", []).append(copy)
                    print(f"  {key:<28} psql    {copy:,.2f}", flush=True)
                    pg.psql("TRUNCATE narrow")
                    s.start(1, 2, "execution.checkpointing.interval: 2 s\nrestart-strategy.type: none")
                    try:
                        secs = job_seconds(s, s.submit(sluice_pg(pg, args.pg_rows)), 1800)
                    finally:
                        s.stop()
                    n = int(pg.psql("SELECT count(*) FROM narrow").stdout.strip() or 0)
                    if n != args.pg_rows:
                        raise RuntimeError(f"G1: {n} rows in the table, not {args.pg_rows}")
                    record(key, s, args.pg_rows / secs)
                if "P7" in only:
                    started, rss = idle(s)
                    record("P7 cluster start s", s, started)
                    record("P7 idle TM RSS MB", s, rss)
            except Exception as e:
                print(f"  {s.name}: {e}", flush=True)
                traceback.print_exc()
                s.stop()
        if "P3" in only and shutil.which("iperf3"):
            bw = loopback_bandwidth() / 1e6
            results.setdefault("P3 loopback TCP MB/s", {}).setdefault("iperf3", []).append(bw)
            print(f"  {'P3 loopback TCP MB/s':<28} iperf3  {bw:,.1f}", flush=True)

    print("\n| figure | Sluice | Flink (or the named limit) | ratio |")
    print("|---|---|---|---|")
    for key, by in results.items():
        s = by.get("Sluice", [])
        f = by.get("Flink") or by.get("iperf3") or by.get("rdkafka") or by.get("psql") or []
        ratio = "n/a"
        if s and f:
            ratio = f"{statistics.median(s) / statistics.median(f):.2f}"
        other = next((f" ({n})" for n in ("iperf3", "rdkafka", "psql") if n in by), "")
        print(f"| {key} | {summary(s)} | {summary(f)}{other} | {ratio} |")
    if kafka:
        kafka.stop()
    if pg:
        pg.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")


if __name__ == "__main__":
    main()
