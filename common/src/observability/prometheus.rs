//! Serves Prometheus text on `metrics.reporter.prom.port` (first free port of the range, as
//! Flink's reporter does): the process-wide `metrics` recorder's series (process scope), then
//! the series of what exists at this scrape (jobs, tasks), written fresh each time by the
//! refresh hook (`ScrapeText`), so a job's or task's series are gone once it is, as Flink drops
//! a metric group when its job or task ends. Gauges that are cheaper to read than to keep
//! current are refreshed right before each scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::PortRange;
use crate::net::bind_first_free;

/// Called at every scrape: brings the process gauges up to date and returns the text of the
/// job- and task-scope series that exist now.
pub type MetricsRefresh = Arc<dyn Fn() -> String + Send + Sync>;

/// Series written for one scrape, grouped by family (with its type) as the exposition format
/// wants: gauges, and summaries (Flink's histograms).
#[derive(Debug, Default)]
pub struct ScrapeText {
    families: BTreeMap<String, (&'static str, String)>,
}

fn label_text(labels: &[(&str, String)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", labels.join(","))
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn sample_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

impl ScrapeText {
    pub fn gauge(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        let (_, lines) = self
            .families
            .entry(name.to_string())
            .or_insert(("gauge", String::new()));
        let _ = writeln!(lines, "{name}{} {}", label_text(labels), sample_value(value));
    }

    /// A summary as Flink's reporter writes a histogram: one sample per quantile (label
    /// `quantile`) and `<name>_count`; no `_sum`.
    pub fn summary(&mut self, name: &str, labels: &[(&str, String)], quantiles: &[(f64, f64)], count: u64) {
        let (_, lines) = self
            .families
            .entry(name.to_string())
            .or_insert(("summary", String::new()));
        for (q, v) in quantiles {
            let mut l = labels.to_vec();
            // As Java prints a double (Flink's label): 0.0, 0.5, 0.999, 1.0.
            let q = if q.fract() == 0.0 {
                format!("{q:.1}")
            } else {
                q.to_string()
            };
            l.push(("quantile", q));
            let _ = writeln!(lines, "{name}{} {}", label_text(&l), sample_value(*v));
        }
        let _ = writeln!(lines, "{name}_count{} {count}", label_text(labels));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, (kind, lines)) in &self.families {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            out.push_str(lines);
        }
        out
    }
}

fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("a metrics recorder is already installed: {e}"))?;
    Ok(handle)
}

/// Flink's reporter replaces characters outside `[a-zA-Z0-9:_]` in label values with `_`.
pub fn label_value(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Installs the recorder, binds the first free port of `ports` on `host` and serves
/// `GET /metrics` (and `/`) until the runtime stops. Returns the bound address.
pub async fn serve_prometheus(host: &str, ports: &PortRange, refresh: MetricsRefresh) -> Result<SocketAddr, String> {
    let listener = bind_first_free(host, ports)
        .await
        .map_err(|e| format!("metrics.reporter.prom.port: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("metrics listener has no address: {e}"))?;
    let handle = install_recorder()?;
    let render = move || {
        let handle = handle.clone();
        let refresh = refresh.clone();
        async move {
            let scoped = refresh();
            let mut text = handle.render();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&scoped);
            text
        }
    };
    let app = Router::new()
        .route("/metrics", get(render.clone()))
        .route("/", get(render));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("Prometheus endpoint stopped: {e}");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_type_line_per_family_and_escaped_labels() {
        let mut t = ScrapeText::default();
        t.gauge("b_total", &[("job", "a\"b".into())], 1.5);
        t.gauge("a_gauge", &[], f64::NAN);
        t.gauge("b_total", &[("job", "c".into())], 2.0);
        assert_eq!(
            t.render(),
            "# TYPE a_gauge gauge\na_gauge NaN\n# TYPE b_total gauge\nb_total{job=\"a\\\"b\"} 1.5\nb_total{job=\"c\"} 2\n"
        );
    }

    #[test]
    fn a_histogram_is_a_summary_with_flinks_quantile_labels_and_a_count() {
        let mut t = ScrapeText::default();
        t.summary("lag", &[("op", "w".into())], &[(0.0, 1.0), (0.5, 2.0), (1.0, 3.0)], 7);
        assert_eq!(
            t.render(),
            "# TYPE lag summary\nlag{op=\"w\",quantile=\"0.0\"} 1\nlag{op=\"w\",quantile=\"0.5\"} 2\nlag{op=\"w\",quantile=\"1.0\"} 3\nlag_count{op=\"w\"} 7\n"
        );
    }
}
