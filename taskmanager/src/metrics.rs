//! Flink's per-subtask metrics in Prometheus form (`flink_taskmanager_job_task_*`, labelled
//! with job, task and subtask as Flink's reporter does), written at each scrape for the
//! subtasks running now: a subtask's series go when it ends (finished, cancelled, failed,
//! or replaced by a restart or rescale). Per-second figures are the subtask's latest
//! 5-second view (`TaskMetrics::rates_at`), the same the heartbeat digests carry to REST.

use std::sync::atomic::Ordering;
use std::time::Instant;

use sluice_common::observability::{label_value, ScrapeText};

use crate::executor::TaskEntry;
use crate::runtime::user_metrics::Reading;

pub(crate) struct TaskSeries {
    host: String,
    tm_id: String,
}

impl TaskSeries {
    pub(crate) fn new(host: &str, tm_id: &str) -> Self {
        TaskSeries {
            host: label_value(host),
            tm_id: label_value(tm_id),
        }
    }

    pub(crate) fn write(&self, tasks: &[TaskEntry], out: &mut ScrapeText) {
        let now = Instant::now();
        for t in tasks {
            let sample = t.metrics.sample_at(now);
            let rates = t.metrics.rates_at(now);
            let labels = [
                ("host", self.host.clone()),
                ("tm_id", self.tm_id.clone()),
                ("job_id", label_value(&t.job_id)),
                ("job_name", label_value(&t.job_name)),
                ("task_id", label_value(&t.vertex_id)),
                ("task_name", label_value(&t.task_name)),
                ("subtask_index", t.subtask.to_string()),
            ];
            let mut g = |name: &'static str, v: f64| out.gauge(name, &labels, v);
            g("flink_taskmanager_job_task_numRecordsIn", sample.records_in as f64);
            g("flink_taskmanager_job_task_numRecordsOut", sample.records_out as f64);
            g("flink_taskmanager_job_task_numRecordsInPerSecond", rates.records_in);
            g("flink_taskmanager_job_task_numRecordsOutPerSecond", rates.records_out);
            g("flink_taskmanager_job_task_busyTimeMsPerSecond", rates.busy_ms);
            g("flink_taskmanager_job_task_idleTimeMsPerSecond", rates.idle_ms);
            g(
                "flink_taskmanager_job_task_backPressuredTimeMsPerSecond",
                rates.backpressured_ms,
            );
            let wm = t.metrics.input_watermark.load(Ordering::Relaxed);
            g(
                "flink_taskmanager_job_task_currentInputWatermark",
                if wm == i64::MIN { f64::from(i32::MIN) } else { wm as f64 },
            );
            g(
                "flink_taskmanager_job_task_numLateRecordsDropped",
                t.metrics.late_dropped.load(Ordering::Relaxed) as f64,
            );
            // The connector's gauges, in Flink's operator scope (Flink names the operator
            // after the task's head).
            let mut op_labels: Vec<(&str, String)> = labels.to_vec();
            op_labels.push(("operator_name", label_value(&t.task_name)));
            for ((name, extra), value) in t.metrics.operator.snapshot() {
                let mut l = op_labels.clone();
                l.extend(extra.iter().map(|(k, v)| (k.as_str(), label_value(v))));
                out.gauge(&format!("flink_taskmanager_job_task_operator_{name}"), &l, value);
            }
            // The job file's metrics, in the scope of the operator that declared them.
            for ((operator, name), reading) in t.metrics.user.read() {
                let mut l: Vec<(&str, String)> = labels.to_vec();
                l.push(("operator_name", label_value(&operator)));
                let family = format!("flink_taskmanager_job_task_operator_{name}");
                match reading {
                    Reading::Gauge(v) => out.gauge(&family, &l, v),
                    Reading::Summary { quantiles, count } => out.summary(&family, &l, &quantiles, count),
                }
            }
        }
    }
}
