//! Per-vertex resource requirements end to end (`GET/PUT /jobs/:id/resource-requirements`,
//! Flink's body): a running job at parallelism 2 is given other bounds per vertex, rescales to
//! fit them by stop-with-checkpoint, and its committed output stays exact. Bad bodies are
//! refused with the vertex and the bound named.

use std::time::Duration;

use serde_json::json;
use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{job_id_of, wait_for, Cluster};

#[test]
fn a_running_job_rescales_to_fit_new_resource_requirements() {
    let job = WindowedJob {
        rows: 200_000,
        keys: 50,
        splits: 6,
    };
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "state.backend.type: rocksdb\nexecution.checkpointing.dir: file://{}\n\
         execution.checkpointing.interval: 1 s\n",
        checkpoints.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let file = cluster.config_dir().join("job.yaml");
    std::fs::write(&file, job.yaml(&out, 10_000, 2)).expect("job file");
    let run = cluster.sluice("run", &["-d", file.to_str().expect("path")]);
    assert!(run.status.success(), "{run:?}");
    let id = job_id_of(&run);
    let path = format!("/jobs/{id}/resource-requirements");
    let current = wait_for(Duration::from_secs(20), "the requirements", || cluster.rest(&path));
    let vertices: Vec<String> = current.as_object().expect("object").keys().cloned().collect();
    assert_eq!(vertices.len(), 2, "{current}");
    for v in &vertices {
        assert_eq!(current[v]["parallelism"]["upperBound"], 2, "{current}");
    }
    wait_for(Duration::from_secs(20), "a checkpoint", || {
        (cluster.completed_checkpoints(&id) >= 1).then_some(())
    });

    let (status, body) = cluster.rest_put(
        &path,
        &json!({ &vertices[0]: {"parallelism": {"lowerBound": 3, "upperBound": 1}} }),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("lowerBound (3) <= upperBound (1)"), "{body}");

    // One vertex down to 1, the other up to 3 (4 slots: it fits).
    let (narrow, wide) = (&vertices[0], &vertices[1]);
    let wanted = json!({
        narrow: {"parallelism": {"lowerBound": 1, "upperBound": 1}},
        wide: {"parallelism": {"lowerBound": 1, "upperBound": 3}},
    });
    let (status, body) = cluster.rest_put(&path, &wanted);
    assert_eq!(status, 200, "{body}");
    let details = wait_for(Duration::from_secs(30), "the job rescaled to 1 and 3", || {
        let j = cluster.rest(&format!("/jobs/{id}"))?;
        let ps: Vec<(String, u64, String)> = j["vertices"]
            .as_array()?
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap_or("").to_string(),
                    v["parallelism"].as_u64().unwrap_or(0),
                    v["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        // The tasks of the new attempt may report RUNNING before the job leaves its rescale.
        let settled = j["state"] == "RUNNING" && j["rescales"]["in-progress"] == false;
        let ok = settled
            && ps
                .iter()
                .all(|(vid, p, st)| st == "RUNNING" && ((vid == narrow && *p == 1) || (vid == wide && *p == 3)));
        ok.then_some(j)
    });
    println!("rescales: {}", details["rescales"]["history"]);
    assert_eq!(details["rescales"]["count"], 1, "{details}");
    // The record names each vertex whose parallelism changed.
    let changed: Vec<(String, u64, u64)> = details["rescales"]["history"][0]["vertices"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| {
                    (
                        v["id"].as_str().unwrap_or("").to_string(),
                        v["from_parallelism"].as_u64().unwrap_or(0),
                        v["to_parallelism"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut want = vec![(narrow.to_string(), 2, 1), (wide.to_string(), 2, 3)];
    want.sort();
    let mut changed = changed;
    changed.sort();
    assert_eq!(changed, want, "{details}");
    let now = cluster.rest(&path).expect("requirements");
    assert_eq!(now, wanted);
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    job.assert_exact(&out);
}
