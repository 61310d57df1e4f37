//! The leader lease: `leader/lease-<token>` objects in the HA directory, each created
//! create-only, so of the contenders for a token exactly one wins it. The holder of the newest
//! lease leads and rewrites its own object to renew it (a counter that moves); a standby that
//! sees the counter stand still for the lease duration, by its own clock, creates the next
//! token's object. A holder whose last renewal began longer than the lease duration ago no
//! longer acts (`Leadership::is_valid`); it knows it lost when a newer lease exists. The token
//! fences: taskmanagers refuse requests carrying an older one.

use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::HaSettings;

/// What a lease object holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The fencing token: one more than the lease before it.
    pub token: u64,
    /// The holder's jobmanager id.
    pub owner: String,
    /// `host:port` of the holder's RPC endpoint, where taskmanagers register.
    pub rpc_address: String,
    /// `http://host:port` of the holder's REST endpoint.
    pub rest_address: String,
    /// Moves at every renewal.
    pub renewals: u64,
}

const LEASE_PREFIX: &str = "lease-";

fn lease_name(token: u64) -> String {
    format!("leader/{LEASE_PREFIX}{token:020}")
}

impl HaSettings {
    /// The newest lease, if any was ever taken.
    pub async fn current_leader(&self) -> Result<Option<LeaseRecord>, String> {
        let dir = self.location.path("leader");
        let newest = self
            .location
            .list_path(&dir)
            .await?
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                name.strip_prefix(LEASE_PREFIX)?
                    .parse::<u64>()
                    .ok()
                    .map(|t| (t, m.location))
            })
            .max_by_key(|(t, _)| *t);
        let Some((token, path)) = newest else {
            return Ok(None);
        };
        let bytes = self.location.get_path(&path).await?;
        let record: LeaseRecord = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the leader lease {path} in {} is not readable: {e}", self.location.url))?;
        if record.token != token {
            return Err(format!("the leader lease {path} names token {}", record.token));
        }
        Ok(Some(record))
    }

    /// Waits until this process holds the lease. `me` describes this process (its token is
    /// set here). A lease whose holder announced `me`'s own RPC address is free at once: this
    /// process bound that address, so its holder is gone.
    pub async fn acquire(&self, mut me: LeaseRecord) -> Leadership {
        let mut observed: Option<(u64, u64, Instant)> = None;
        let mut announced = 0;
        loop {
            let next = match self.current_leader().await {
                Ok(None) => Some(1),
                Ok(Some(held)) if held.owner == me.owner => Some(held.token + 1),
                Ok(Some(held)) if held.rpc_address == me.rpc_address => {
                    tracing::info!(
                        "The leader lease {} names this jobmanager's RPC address {}: its holder {} is gone.",
                        held.token,
                        held.rpc_address,
                        held.owner
                    );
                    Some(held.token + 1)
                }
                Ok(Some(held)) => {
                    let now = Instant::now();
                    match observed {
                        Some((t, r, since)) if t == held.token && r == held.renewals => {
                            (now.duration_since(since) >= self.lease_duration).then_some(held.token + 1)
                        }
                        _ => {
                            if announced != held.token {
                                tracing::info!(
                                    "Standing by: jobmanager {} leads (lease {}, RPC {}, REST {}).",
                                    held.owner,
                                    held.token,
                                    held.rpc_address,
                                    held.rest_address
                                );
                                announced = held.token;
                            }
                            observed = Some((held.token, held.renewals, now));
                            None
                        }
                    }
                }
                Err(e) => {
                    // While the store does not answer nobody can tell whether the holder renews:
                    // its lease counts from the next reading again.
                    tracing::warn!("Cannot read the leader lease: {e}");
                    observed = None;
                    None
                }
            };
            if let Some(token) = next {
                me.token = token;
                me.renewals = 0;
                let began = Instant::now();
                match self.write_lease(&me, true).await {
                    Ok(true) => {
                        tracing::info!("This jobmanager leads now (lease {token}).");
                        return Leadership {
                            settings: self.clone(),
                            record: Mutex::new(me),
                            renewed: Mutex::new(began),
                        };
                    }
                    Ok(false) => tracing::info!("Another jobmanager took lease {token} first."),
                    Err(e) => tracing::warn!("Cannot take lease {token}: {e}"),
                }
            }
            tokio::time::sleep(self.renew_interval).await;
        }
    }

    async fn write_lease(&self, record: &LeaseRecord, create: bool) -> Result<bool, String> {
        let bytes = Bytes::from(serde_json::to_vec(record).map_err(|e| e.to_string())?);
        let path = self.location.path(&lease_name(record.token));
        if create {
            self.location.create_path(&path, bytes).await
        } else {
            self.location.put_path(&path, bytes).await.map(|()| true)
        }
    }
}

/// The lease this process holds.
#[derive(Debug)]
pub struct Leadership {
    settings: HaSettings,
    record: Mutex<LeaseRecord>,
    /// When the last successful renewal began.
    renewed: Mutex<Instant>,
}

impl Leadership {
    pub fn token(&self) -> u64 {
        self.record.lock().map(|r| r.token).unwrap_or(0)
    }

    /// Whether this process may still act as the leader: its last renewal began less than the
    /// lease duration ago (a standby waits at least that long after seeing it).
    pub fn is_valid(&self) -> bool {
        self.renewed
            .lock()
            .map(|r| r.elapsed() < self.settings.lease_duration)
            .unwrap_or(false)
    }

    /// Renews the lease; `Err` with the reason once it is lost (a newer lease exists, or the
    /// last renewal is too old to act on). A storage error leaves it held until it expires.
    pub async fn renew(&self) -> Result<(), String> {
        let began = Instant::now();
        if !self.is_valid() {
            return Err(format!(
                "the lease was not renewed for {} ms (high-availability.object-store.lease-duration); a standby may lead now",
                self.settings.lease_duration.as_millis()
            ));
        }
        let mut record = self.record.lock().map_err(|e| e.to_string())?.clone();
        match self.settings.current_leader().await {
            Ok(Some(newest)) if newest.token != record.token => {
                return Err(format!(
                    "jobmanager {} took lease {} (this one held {})",
                    newest.owner, newest.token, record.token
                ))
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("Cannot read the leader lease to renew it: {e}");
                return Ok(());
            }
        }
        record.renewals += 1;
        match self.settings.write_lease(&record, false).await {
            Ok(_) => {
                if let Ok(mut r) = self.record.lock() {
                    *r = record;
                }
                if let Ok(mut r) = self.renewed.lock() {
                    *r = began;
                }
            }
            Err(e) => tracing::warn!("Cannot renew the leader lease: {e}"),
        }
        Ok(())
    }

    /// Renews the lease every renew interval until it is lost; returns why.
    pub async fn hold(&self) -> String {
        loop {
            tokio::time::sleep(self.settings.renew_interval).await;
            if let Err(why) = self.renew().await {
                return why;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::open_location;

    fn me(owner: &str, rpc: &str) -> LeaseRecord {
        LeaseRecord {
            token: 0,
            owner: owner.into(),
            rpc_address: rpc.into(),
            rest_address: String::new(),
            renewals: 0,
        }
    }

    #[tokio::test]
    async fn one_contender_leads_and_a_standby_takes_over_after_the_lease_expires() {
        let dir = std::env::temp_dir().join(format!("sluice-lease-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        let ha = HaSettings {
            location: open_location(&url, &crate::config::Configuration::new()).unwrap(),
            lease_duration: Duration::from_millis(1000),
            renew_interval: Duration::from_millis(100),
        };
        let a = ha.acquire(me("a", "h:1")).await;
        assert_eq!(a.token(), 1);
        assert!(a.is_valid());
        a.renew().await.unwrap();
        // b waits while a renews, then takes lease 2 once a stops renewing.
        let standby = tokio::spawn({
            let ha = ha.clone();
            async move { ha.acquire(me("b", "h:2")).await }
        });
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            a.renew().await.unwrap();
        }
        assert!(!standby.is_finished(), "no takeover while the leader renews");
        let b = tokio::time::timeout(Duration::from_secs(5), standby)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.token(), 2);
        assert_eq!(ha.current_leader().await.unwrap().unwrap().owner, "b");
        // The deposed leader learns it lost and never writes its lease again.
        let e = a.renew().await.unwrap_err();
        assert!(e.contains("lease"), "{e}");
        // A restarted process on the holder's RPC address takes over at once.
        let c = tokio::time::timeout(Duration::from_secs(1), ha.acquire(me("c", "h:2")))
            .await
            .unwrap();
        assert_eq!(c.token(), 3);
        let _ = std::fs::remove_dir_all(dir);
    }
}
