"""Submits a SQL script (statements separated by `;`, the last one the INSERT) to a running
Flink cluster through PyFlink's Table API and waits for the job; used by scripts/bench.py,
run with the Python of the venv scripts/bench.sh installs apache-flink into.

  bench_flink_sql.py SCRIPT.sql REST_PORT     submit to a session cluster
  bench_flink_sql.py SCRIPT.sql application   run as the job of an application cluster
                                              (`standalone-job.sh start -py` this script)
"""
import sys
from pyflink.table import EnvironmentSettings, TableEnvironment
from pyflink.common import Configuration
conf = Configuration()
if sys.argv[2:3] != ["application"]:
    conf.set_string("execution.target", "remote")
    conf.set_string("rest.address", "127.0.0.1")
    conf.set_string("rest.port", sys.argv[2] if len(sys.argv) > 2 else "8081")
    conf.set_string("parallelism.default", "2")
env = TableEnvironment.create(EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build())
stmts = []
for s in (s.strip() for s in open(sys.argv[1]).read().split(";")):
    if s.upper().startswith("SET"):
        # SET 'key' = 'value': a table option of this job.
        key, value = (part.strip().strip("'") for part in s[3:].split("=", 1))
        env.get_config().set(key, value)
    elif s:
        stmts.append(s)
for s in stmts[:-1]:
    env.execute_sql(s)
result = env.execute_sql(stmts[-1])
job = result.get_job_client().get_job_id()
print("JOBID", job, flush=True)
result.wait()
