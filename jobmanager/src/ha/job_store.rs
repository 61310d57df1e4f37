//! Submitted jobs in the HA directory (`jobs/<job id>.json`): written before a submission is
//! accepted, removed when the job reaches a globally terminal state (finished, cancelled,
//! failed), read by a jobmanager that takes the lead.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_common::ha::HaSettings;
use sluice_common::storage::StorageLocation;

use crate::scheduler::SubmitOptions;

/// What a submission was: enough to submit it again under the same id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub id: String,
    pub yaml: String,
    pub file: String,
    pub options: SubmitOptions,
}

#[derive(Debug)]
pub(crate) struct JobStore {
    location: StorageLocation,
}

impl JobStore {
    pub(crate) fn new(ha: &HaSettings) -> Self {
        JobStore {
            location: ha.location.clone(),
        }
    }

    fn name(id: &str) -> String {
        format!("jobs/{id}.json")
    }

    pub(crate) async fn put(&self, record: &JobRecord) -> Result<(), String> {
        let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        self.location.put(&Self::name(&record.id), Bytes::from(bytes)).await
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), String> {
        self.location.delete_path(&self.location.path(&Self::name(id))).await
    }

    /// Every job kept; a record that does not read is an error naming it (nothing is dropped).
    pub(crate) async fn list(&self) -> Result<Vec<JobRecord>, String> {
        let mut records = Vec::new();
        for meta in self.location.list_path(&self.location.path("jobs")).await? {
            let bytes = self.location.get_path(&meta.location).await?;
            let record: JobRecord = serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "the submitted job {} in {} is not readable: {e}",
                    meta.location, self.location.url
                )
            })?;
            records.push(record);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use sluice_common::config::Configuration;
    use sluice_common::storage::open_location;

    #[tokio::test]
    async fn records_round_trip_and_leave_when_removed() {
        let dir = std::env::temp_dir().join(format!("sluice-job-store-{}", std::process::id()));
        let ha = HaSettings {
            location: open_location(&format!("file://{}", dir.display()), &Configuration::new()).unwrap(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        };
        let store = JobStore::new(&ha);
        assert!(store.list().await.unwrap().is_empty());
        let r = JobRecord {
            id: "abc".into(),
            yaml: "name: x".into(),
            file: "x.yaml".into(),
            options: SubmitOptions {
                dynamic: vec![("k".into(), "v".into())],
                parallelism: Some(2),
                ..Default::default()
            },
        };
        store.put(&r).await.unwrap();
        assert_eq!(store.list().await.unwrap(), vec![r]);
        store.remove("abc").await.unwrap();
        store.remove("abc").await.unwrap();
        assert!(store.list().await.unwrap().is_empty());
        std::fs::create_dir_all(dir.join("jobs")).unwrap();
        std::fs::write(dir.join("jobs/broken.json"), b"{").unwrap();
        let e = store.list().await.unwrap_err();
        assert!(e.contains("broken.json"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
