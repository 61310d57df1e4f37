//! The dashboard the jobmanager serves at `/`, loaded in a real headless Chromium (Debian
//! `chromium`): after its scripts ran against a running job with checkpoints, the page shows
//! the cluster, the taskmanagers, the job with each vertex's parallelism, the checkpoint
//! history and the rescale section; a screenshot is saved for people to look at. Skipped, with
//! a message, where Chromium is not installed.

use std::process::Command;
use std::time::Duration;

use sluice_tests::tools::have_tool;
use sluice_tests::{unbounded_job, wait_for, Cluster};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn dashboard_renders_cluster_job_graph_and_checkpoints() {
    let browser = chromium();
    if !have_tool(
        browser.is_some(),
        "Chromium is not installed (Debian package chromium; scripts/test.sh installs it)",
    ) {
        return;
    }
    let Some(browser) = browser else { return };
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 500 ms\n",
        checkpoints.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let id = cluster.submit(&unbounded_job("dashboard-demo", 3, 5000), "job.yaml");
    wait_for(Duration::from_secs(30), "two checkpoints", || {
        (cluster.completed_checkpoints(&id) >= 2).then_some(())
    });

    let url = format!("http://127.0.0.1:{}/", cluster.rest_port);
    let profile = tempfile::tempdir().expect("dir");
    let headless = |extra: &str| {
        Command::new(browser)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--window-size=1400,1300", "--virtual-time-budget=8000", extra, &url])
            .output()
            .expect("run chromium")
    };
    let dom = headless("--dump-dom");
    assert!(dom.status.success(), "{dom:?}");
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    for expected in [
        "dashboard-demo",
        &id,
        "Source: events",
        "per-key -&gt; Sink: out",
        "parallelism <span class=\"p\">3</span>",
        "COMPLETED",
        "slots available",
        "no rescales",
    ] {
        assert!(dom.contains(expected), "the rendered page lacks {expected:?}:\n{dom}");
    }
    // Rendered boxes carry the vertex id (the script's template has `${…}` there instead).
    let vertices = dom
        .split("data-vertex=\"")
        .skip(1)
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_hexdigit()))
        .count();
    assert_eq!(vertices, 2, "two vertex boxes in the job graph");

    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let taken = headless(&format!("--screenshot={}", shot.display()));
    assert!(taken.status.success(), "{taken:?}");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "screenshot {} is {size} bytes", shot.display());
    println!("dashboard screenshot: {} ({size} bytes)", shot.display());
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}
