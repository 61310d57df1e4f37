//! Where the HA services keep their files: `high-availability.storageDir` joined with
//! `high-availability.cluster-id`, and the lease's timing.

use std::time::Duration;

use crate::config::options::{
    HighAvailabilityKind, HA_CLUSTER_ID, HA_LEASE_DURATION, HA_RENEW_INTERVAL, HA_STORAGE_DIR, HA_TYPE,
};
use crate::config::Configuration;
use crate::storage::{location_url, open_location, url_join, StorageLocation};

#[derive(Clone, Debug)]
pub struct HaSettings {
    /// The cluster's HA directory.
    pub location: StorageLocation,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

impl HaSettings {
    /// `None` without HA (`high-availability.type: NONE`).
    pub fn from_config(config: &Configuration) -> Result<Option<HaSettings>, String> {
        if config.get(&HA_TYPE).map_err(|e| e.to_string())? == HighAvailabilityKind::None {
            return Ok(None);
        }
        let dir = config.get_opt(&HA_STORAGE_DIR).map_err(|e| e.to_string())?.ok_or_else(|| {
            "high-availability.type is object-store, but high-availability.storageDir is not set: set it to the file:// or s3:// URL where the HA services keep their files.".to_string()
        })?;
        let cluster = config.get(&HA_CLUSTER_ID).map_err(|e| e.to_string())?;
        let cluster = cluster.trim_matches('/');
        if cluster.is_empty() || cluster.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(format!(
                "high-availability.cluster-id '{cluster}' is not a usable directory name"
            ));
        }
        let lease_duration = config.get(&HA_LEASE_DURATION).map_err(|e| e.to_string())?;
        let renew_interval = config.get(&HA_RENEW_INTERVAL).map_err(|e| e.to_string())?;
        if renew_interval.is_zero() || renew_interval * 2 > lease_duration {
            return Err(format!(
                "high-availability.object-store.renew-interval ({} ms) must be positive and at most half of high-availability.object-store.lease-duration ({} ms)",
                renew_interval.as_millis(),
                lease_duration.as_millis()
            ));
        }
        let url = url_join(&location_url(&dir), cluster);
        Ok(Some(HaSettings {
            location: open_location(&url, config)?,
            lease_duration,
            renew_interval,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_ha_needs_a_storage_dir_and_sane_timing() {
        assert!(HaSettings::from_config(&Configuration::new()).unwrap().is_none());
        let c = Configuration::new().with("high-availability.type", "object-store");
        let e = HaSettings::from_config(&c).unwrap_err();
        assert!(e.contains("high-availability.storageDir"), "{e}");
        let dir = std::env::temp_dir().join(format!("sluice-ha-settings-{}", std::process::id()));
        let c = c
            .with("high-availability.storageDir", &format!("file://{}", dir.display()))
            .with("high-availability.object-store.renew-interval", "10 s");
        let e = HaSettings::from_config(&c).unwrap_err();
        assert!(e.contains("renew-interval"), "{e}");
        let c = c.with("high-availability.object-store.renew-interval", "1 s");
        let ha = HaSettings::from_config(&c).unwrap().unwrap();
        assert!(ha.location.url.ends_with("/default"), "{}", ha.location.url);
        let _ = std::fs::remove_dir_all(dir);
    }
}
