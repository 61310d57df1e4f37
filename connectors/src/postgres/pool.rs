//! The sink's connections under `connection.pool.max-size`: a connection is opened only with a
//! permit of the sink's pool and the permit goes back only once the connection is closed.
//! Permits come from the jobmanager, so the bound holds for all subtasks of the sink together
//! wherever they run; without one (unit tests) from a semaphore of this process. When the sink
//! has more subtasks than the pool has connections, writers hold a connection only while they
//! write (a flush, a prepare, a commit) and take turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sluice_common::failure::ClassedError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::options::PgOptions;
use super::retry::{connect, Failure};
use crate::contract::Permits;

/// Where a lease's permit came from.
enum Permit {
    Local(OwnedSemaphorePermit),
    Remote(Arc<dyn Permits>, String),
}

/// A connection and its permit: dropping it closes the connection, then returns the permit.
pub(crate) struct Lease {
    client: Option<Client>,
    io: Option<JoinHandle<()>>,
    permit: Option<Permit>,
}

impl Lease {
    pub(crate) fn client(&self) -> Result<&Client, ClassedError> {
        self.client
            .as_ref()
            .ok_or_else(|| ClassedError::internal("a PostgreSQL lease without its connection"))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.client.take());
        let (io, permit) = (self.io.take(), self.permit.take());
        let give_back = async move {
            if let Some(io) = io {
                let _ = io.await;
            }
            match permit {
                Some(Permit::Remote(permits, pool)) => permits.release(&pool).await,
                Some(Permit::Local(p)) => drop(p),
                None => {}
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(give_back);
            }
            Err(_) => tracing::debug!("A PostgreSQL connection dropped outside a runtime; its permit lapses."),
        }
    }
}

/// The pool's name: the server and the sink's transaction prefix (unique per sink and table).
fn pool_name(options: &PgOptions) -> String {
    format!("postgres:{}/{}", options.server(), options.txn_prefix)
}

fn local_semaphore(options: &PgOptions) -> Arc<Semaphore> {
    static POOLS: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(Default::default);
    let mut pools = pools.lock().unwrap_or_else(|p| p.into_inner());
    pools
        .entry(pool_name(options))
        .or_insert_with(|| Arc::new(Semaphore::new(options.pool_max as usize)))
        .clone()
}

/// Waits for a permit, then connects.
pub(crate) async fn lease(options: &PgOptions, permits: Option<&Arc<dyn Permits>>) -> Result<Lease, Failure> {
    let permit = match permits {
        Some(p) => {
            let pool = pool_name(options);
            p.acquire(&pool, options.pool_max).await?;
            Permit::Remote(p.clone(), pool)
        }
        None => Permit::Local(
            local_semaphore(options)
                .acquire_owned()
                .await
                .map_err(|e| Failure::Other(ClassedError::internal(format!("the connection pool closed: {e}"))))?,
        ),
    };
    // From here on the permit goes back when the lease drops, also when connecting fails.
    let mut lease = Lease {
        client: None,
        io: None,
        permit: Some(permit),
    };
    let (client, io) = connect(options).await.map_err(Failure::Pg)?;
    lease.client = Some(client);
    lease.io = Some(io);
    Ok(lease)
}
