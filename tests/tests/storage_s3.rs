//! Checkpoint storage against a real S3 server (SeaweedFS) and the local filesystem, through
//! the same code the jobmanager uses: create-only `_metadata`, newest intact checkpoint (a
//! corrupted newest one falls back to the previous), discarding a checkpoint's files.

use bytes::Bytes;
use sluice_common::config::{ConfigSources, Configuration};
use sluice_common::proto::checkpoint::CheckpointMetadata;
use sluice_common::storage::{open_location, CheckpointStore};
use sluice_tests::seaweed::SeaweedFs;

fn metadata(id: u64) -> CheckpointMetadata {
    CheckpointMetadata {
        job_id: "job".into(),
        checkpoint_id: id,
        timestamp_ms: 1,
        max_parallelism: 128,
        ..Default::default()
    }
}

async fn exercise(url: &str, config: &Configuration) {
    let store = CheckpointStore::new(open_location(url, config).expect("location"), "job");
    for id in 1..=3 {
        store
            .put(&store.layout.file(id, "state-0"), Bytes::from(vec![id as u8; 1000]))
            .await
            .expect("state file");
        store.complete(&metadata(id)).await.expect("complete");
    }
    let again = store.complete(&metadata(3)).await.expect_err("create-only");
    assert!(again.contains("already exists"), "{again}");
    assert_eq!(store.checkpoint_ids().await.expect("ids"), vec![3, 2, 1]);
    assert_eq!(
        store.latest_complete().await.expect("latest").map(|m| m.checkpoint_id),
        Some(3)
    );
    store
        .put(&store.layout.metadata(3), Bytes::from_static(b"torn"))
        .await
        .expect("corrupt");
    assert_eq!(
        store.latest_complete().await.expect("latest").map(|m| m.checkpoint_id),
        Some(2)
    );
    store.discard(1).await.expect("discard");
    assert_eq!(store.checkpoint_ids().await.expect("ids"), vec![3, 2]);
    assert_eq!(
        store.get(&store.layout.file(2, "state-0")).await.expect("read").len(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_storage_on_s3_and_file() {
    let s3 = SeaweedFs::start();
    let config = sluice_common::config::load(&ConfigSources {
        properties: Some(s3.config_lines()),
        ..Default::default()
    })
    .expect("config")
    .config;
    exercise(&format!("s3://{}/checkpoints", sluice_tests::seaweed::BUCKET), &config).await;

    let dir = tempfile::tempdir().expect("temp dir");
    exercise(
        &format!("file://{}/checkpoints", dir.path().display()),
        &Configuration::new(),
    )
    .await;

    // Wrong credentials are refused by the real server.
    let bad = config.clone().with("s3.secret-key", "wrong");
    let store = CheckpointStore::new(
        open_location(&format!("s3://{}/x", sluice_tests::seaweed::BUCKET), &bad).expect("location"),
        "job",
    );
    assert!(store.complete(&metadata(1)).await.is_err());
}
