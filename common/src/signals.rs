//! Shutdown on SIGTERM or SIGINT, as a future the daemons select on.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves with the signal's name when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() -> &'static str {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Without signal handlers (should not happen on Unix) fall back to Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
