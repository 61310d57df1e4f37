//! Flink's per-subtask metrics in Prometheus form (`flink_taskmanager_job_task_*`, labelled
//! with job, task and subtask as Flink's reporter does). Rates are over the time since the
//! previous scrape.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sluice_common::observability::label_value;

use crate::executor::TaskEntry;
use crate::runtime::metrics::TaskSample;

#[derive(Default)]
pub(crate) struct TaskGauges {
    host: String,
    tm_id: String,
    last: HashMap<(String, u32, u32), (Instant, TaskSample)>,
}

pub(crate) fn task_gauges(host: &str, tm_id: &str) -> TaskGauges {
    TaskGauges {
        host: label_value(host),
        tm_id: label_value(tm_id),
        last: HashMap::new(),
    }
}

impl TaskGauges {
    pub(crate) fn refresh(&mut self, tasks: &[TaskEntry]) {
        let now = Instant::now();
        let mut seen = HashMap::new();
        for t in tasks {
            let key = (t.job_id.clone(), t.vertex, t.subtask);
            let sample = t.metrics.sample();
            let (then, before) = self.last.get(&key).copied().unwrap_or((now, TaskSample::default()));
            let secs = now.duration_since(then).as_secs_f64();
            let per_second = |a: u64, b: u64| {
                if secs > 0.0 {
                    a.saturating_sub(b) as f64 / secs
                } else {
                    0.0
                }
            };
            let ms_per_second = |a: u64, b: u64| {
                if secs > 0.0 {
                    (a.saturating_sub(b) as f64 / 1e6 / secs).min(1000.0)
                } else {
                    0.0
                }
            };
            let labels = [
                ("host", self.host.clone()),
                ("tm_id", self.tm_id.clone()),
                ("job_id", label_value(&t.job_id)),
                ("job_name", label_value(&t.job_name)),
                ("task_id", label_value(&t.vertex_id)),
                ("task_name", label_value(&t.task_name)),
                ("subtask_index", t.subtask.to_string()),
            ];
            let g = |name: &'static str, v: f64| metrics::gauge!(name, &labels).set(v);
            g("flink_taskmanager_job_task_numRecordsIn", sample.records_in as f64);
            g("flink_taskmanager_job_task_numRecordsOut", sample.records_out as f64);
            g(
                "flink_taskmanager_job_task_numRecordsInPerSecond",
                per_second(sample.records_in, before.records_in),
            );
            g(
                "flink_taskmanager_job_task_numRecordsOutPerSecond",
                per_second(sample.records_out, before.records_out),
            );
            g(
                "flink_taskmanager_job_task_busyTimeMsPerSecond",
                ms_per_second(sample.busy_ns, before.busy_ns),
            );
            g(
                "flink_taskmanager_job_task_idleTimeMsPerSecond",
                ms_per_second(sample.idle_ns, before.idle_ns),
            );
            g(
                "flink_taskmanager_job_task_backPressuredTimeMsPerSecond",
                ms_per_second(sample.backpressured_ns, before.backpressured_ns),
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
            seen.insert(key, (now, sample));
        }
        self.last = seen;
    }
}
