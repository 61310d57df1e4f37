//! The dashboard the jobmanager serves at `/`, loaded in a real headless Chromium (Debian
//! `chromium`) against a running cluster: a windowed job with checkpoints shows its graph,
//! parallelism, checkpoint history and, after a rescale through
//! `PUT /jobs/:id/resource-requirements`, that rescale; a job with a slow sink shows its source
//! back-pressured and its sink busy (≥ 900 ms/s) from the corrected metrics; a union of two
//! sources is drawn with both sources side by side feeding it. Screenshots are
//! saved for people to look at. Skipped, with a message, where Chromium is not installed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sluice_tests::tools::have_tool;
use sluice_tests::{get_text, unbounded_job, wait_for, Cluster, SLOW_SINK_JOB};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

struct Browser {
    bin: &'static str,
    profile: tempfile::TempDir,
    base: String,
}

impl Browser {
    fn headless(&self, job: &str, extra: &str) -> std::process::Output {
        Command::new(self.bin)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(["--window-size=1400,1900", "--virtual-time-budget=8000", extra])
            .arg(format!("{}/#{job}", self.base))
            .output()
            .expect("run chromium")
    }

    /// The page showing `job`, after its scripts ran.
    fn dom(&self, job: &str) -> String {
        let dom = self.headless(job, "--dump-dom");
        assert!(dom.status.success(), "{dom:?}");
        String::from_utf8_lossy(&dom.stdout).to_string()
    }

    fn screenshot(&self, job: &str, name: &str) {
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        let taken = self.headless(job, &format!("--screenshot={}", shot.display()));
        assert!(taken.status.success(), "{taken:?}");
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 20_000, "screenshot {} is {size} bytes", shot.display());
        println!("dashboard screenshot: {} ({size} bytes)", shot.display());
    }
}

/// Two sources into one union, then a window: a graph with fan-in.
const UNION_JOB: &str = r#"name: two-sources
parallelism: 1
sources:
  - id: web
    connector: datagen
    options: {rows-per-second: 100}
    schema:
      - {name: page, type: bigint, expr: "seq % 50"}
  - id: app
    connector: datagen
    options: {rows-per-second: 100}
    schema:
      - {name: page, type: bigint, expr: "seq % 70"}
operators:
  - id: all-views
    input: [web, app]
  - id: per-page
    input: all-views
    key-by: page
    window: {type: tumbling, size: 1 s, time: processing}
    aggregate: {views: "count(*)"}
sinks:
  - id: out
    input: per-page
    connector: blackhole
"#;

/// The text of the vertex box whose name starts with `name`.
fn vertex_box<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("<div class=\"name\">{name}"))
        .unwrap_or_else(|| panic!("no vertex {name} in:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("data-vertex=").unwrap_or(rest.len())]
}

/// The first "<label> N ms/s" figure in `text`.
fn figure(text: &str, label: &str) -> f64 {
    text.split(&format!("{label} "))
        .nth(1)
        .and_then(|t| t.split(" ms/s").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no '{label} … ms/s' in {text}"))
}

#[test]
fn dashboard_renders_jobs_back_pressure_checkpoints_and_rescales() {
    let browser = chromium();
    if !have_tool(
        browser.is_some(),
        "Chromium is not installed (Debian package chromium; scripts/test.sh installs it)",
    ) {
        return;
    }
    let Some(bin) = browser else { return };
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 500 ms\nheartbeat.interval: 1 s\n",
        checkpoints.path().display()
    ));
    let (_jm, jm_metrics) = cluster.start_jobmanager();
    let slots = ["-D", "taskmanager.numberOfTaskSlots=3"];
    let (_a, tm_a) = cluster.start_taskmanager(&slots);
    let (_b, tm_b) = cluster.start_taskmanager(&slots);
    let (_c, tm_c) = cluster.start_taskmanager(&slots);
    cluster.wait_taskmanagers(3, Duration::from_secs(20));
    let id = cluster.submit(&unbounded_job("dashboard-demo", 3, 5000), "job.yaml");
    let slow = cluster.submit(SLOW_SINK_JOB, "slow-sink.yaml");
    let union = cluster.submit(UNION_JOB, "union.yaml");
    wait_for(Duration::from_secs(30), "two checkpoints", || {
        (cluster.completed_checkpoints(&id) >= 2).then_some(())
    });
    let browser = Browser {
        bin,
        profile: tempfile::tempdir().expect("dir"),
        base: format!("http://127.0.0.1:{}", cluster.rest_port),
    };

    let dom = browser.dom(&id);
    for expected in [
        "dashboard-demo",
        &id,
        "Source: events",
        "per-key -&gt; Sink: out",
        "parallelism <span class=\"p\">3</span>",
        "COMPLETED",
        "slots available",
        "no rescales",
        "no exceptions",
        "Stop with savepoint",
        "<polyline",
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
    browser.screenshot(&id, "dashboard.png");

    // The slow-sink job: its sources back-pressured, its sink busy, once the metric views
    // have filled (5 s) and reached the jobmanager.
    let dom = wait_for(Duration::from_secs(60), "back-pressure on the dashboard", || {
        let dom = browser.dom(&slow);
        let source = figure(vertex_box(&dom, "Source: events"), "back-pressured");
        let sink = figure(vertex_box(&dom, "Sink: out"), "busy");
        println!("dashboard: source back-pressured {source} ms/s, sink busy {sink} ms/s");
        (source >= 900.0 && sink >= 900.0).then_some(dom)
    });
    assert!(dom.contains("slow-sink"), "{dom}");
    browser.screenshot(&slow, "dashboard-back-pressure.png");

    // A union is drawn as fan-in: both sources in the first column, an edge from each.
    let dom = browser.dom(&union);
    let first_column = dom
        .split("<div class=\"layer\">")
        .nth(1)
        .expect("a first column of vertices");
    assert!(
        first_column.contains("Source: web")
            && first_column.contains("Source: app")
            && !first_column.contains("all-views"),
        "the two sources share the first column:\n{dom}"
    );
    let edges = dom
        .split("<svg class=\"edges\" id=\"edges\" width=")
        .nth(1)
        .and_then(|svg| svg.split("</svg>").next())
        .unwrap_or_default();
    assert_eq!(
        edges.matches("<path d=\"M").count() - 1,
        3,
        "three edges (and the arrow head):\n{dom}"
    );
    browser.screenshot(&union, "dashboard-union.png");

    // A rescale through REST: in GET /jobs/:id, numRescales and the dashboard.
    let requirements = cluster
        .rest(&format!("/jobs/{id}/resource-requirements"))
        .expect("requirements");
    let details = cluster.rest(&format!("/jobs/{id}")).expect("job details");
    let window = details["vertices"]
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("per-key")))
        })
        .and_then(|v| v["id"].as_str())
        .expect("the window vertex")
        .to_string();
    let mut wanted = requirements.clone();
    wanted[&window] = json!({"parallelism": {"lowerBound": 1, "upperBound": 1}});
    let (status, body) = cluster.rest_put(&format!("/jobs/{id}/resource-requirements"), &wanted);
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(60), "the rescale recorded", || {
        let j = cluster.rest(&format!("/jobs/{id}"))?;
        (j["rescales"]["count"] == 1 && j["state"] == "RUNNING").then_some(())
    });
    let metric = cluster
        .rest(&format!("/jobs/{id}/metrics?get=numRescales"))
        .expect("job metrics");
    assert_eq!(metric[0]["value"], "1", "{metric}");
    let prometheus = get_text(&format!("http://127.0.0.1:{jm_metrics}/metrics")).unwrap_or_default();
    assert!(
        prometheus
            .lines()
            .any(|l| l.starts_with("flink_jobmanager_job_numRescales{") && l.contains(&id) && l.ends_with(" 1")),
        "{prometheus}"
    );
    // The rescale left no series of the window's old subtasks on the taskmanagers.
    wait_for(Duration::from_secs(30), "one window subtask's series", || {
        let text: String = [tm_a, tm_b, tm_c]
            .iter()
            .map(|p| get_text(&format!("http://127.0.0.1:{p}/metrics")).unwrap_or_default())
            .collect();
        let window_series = text
            .lines()
            .filter(|l| {
                l.starts_with("flink_taskmanager_job_task_busyTimeMsPerSecond{")
                    && l.contains(&id)
                    && l.contains("task_name=\"per_key")
            })
            .count();
        (window_series == 1).then_some(())
    });
    let dom = browser.dom(&id);
    assert!(
        dom.contains("per-key -&gt; Sink: out: 3 → 1"),
        "the rescale row lacks the vertex:\n{dom}"
    );
    browser.screenshot(&id, "dashboard-rescale.png");
    for job in [&id, &slow, &union] {
        let c = cluster.sluice("cancel", &[job.as_str()]);
        assert!(c.status.success(), "{c:?}");
    }
}
