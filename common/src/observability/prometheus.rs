//! Serves Prometheus text on `metrics.reporter.prom.port` (first free port of the range, as
//! Flink's reporter does) from the process-wide `metrics` recorder. Gauges that are cheaper to
//! read than to keep current are refreshed right before each scrape.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::PortRange;
use crate::net::bind_first_free;

/// Called before every scrape to bring gauges up to date.
pub type MetricsRefresh = Arc<dyn Fn() + Send + Sync>;

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
            refresh();
            handle.render()
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
