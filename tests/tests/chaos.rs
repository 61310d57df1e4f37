//! The chaos suite: one HA cluster (jobmanager, three one-slot taskmanagers, SeaweedFS for
//! checkpoints and the HA store) runs a bounded exactly-once job per round while one fault hits
//! it: `kill -9` of a taskmanager, `kill -9` of the jobmanager (restarted with the same
//! configuration), SIGSTOP of SeaweedFS for up to 15 s, SIGSTOP of a taskmanager beyond the
//! heartbeat timeout, and `kill -9` of every taskmanager in the finishing phase (after a sink
//! subtask finished, before the job did). Each round's committed output is compared with the
//! reference. `SLUICE_CHAOS_ROUNDS` (default 5: each fault once) and `SLUICE_CHAOS_SEED` set
//! the run; `scripts/chaos.sh N` runs N rounds and prints the tally.

use std::time::{Duration, Instant};

use sluice_tests::seaweed::{SeaweedFs, BUCKET};
use sluice_tests::windowed_job::{OutputTally, WindowedJob};
use sluice_tests::{all_tasks_running, wait_or_explain, Cluster, Daemon};

const JOB: WindowedJob = WindowedJob {
    rows: 24_000,
    keys: 500,
    splits: 4,
};
const RATE: u32 = 4_000;
const ONE_SLOT: &[&str] = &["-D", "taskmanager.numberOfTaskSlots=1"];

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillTaskManager,
    KillJobManager,
    PauseStorage,
    PauseTaskManager,
    KillAllWhileFinishing,
}

const FAULTS: [Fault; 5] = [
    Fault::KillTaskManager,
    Fault::KillJobManager,
    Fault::PauseStorage,
    Fault::PauseTaskManager,
    Fault::KillAllWhileFinishing,
];

/// xorshift: a reproducible run from its printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Watches one round's job: when it stopped running after the fault began, and when every
/// task ran again.
struct Recovery {
    began: Instant,
    down: bool,
    up_after: Option<Duration>,
}

impl Recovery {
    fn observe(&mut self, running: bool) {
        if !running {
            self.down = true;
        } else if self.down && self.up_after.is_none() {
            self.up_after = Some(self.began.elapsed());
        }
    }
}

struct Chaos {
    cluster: Cluster,
    s3: SeaweedFs,
    jm: Daemon,
    tms: Vec<Daemon>,
    storage_paused: bool,
}

impl Chaos {
    fn all_running(&self, id: &str) -> bool {
        all_tasks_running(self.cluster.rest_port, id)
    }

    fn job_state(&self, id: &str) -> String {
        self.cluster.job_state(id).unwrap_or_default()
    }

    /// Sleeps `d` while watching job `id`.
    fn watch(&self, d: Duration, id: &str, recovery: &mut Recovery) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            recovery.observe(self.all_running(id));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Injects `fault` into the running job `id`; returns when the fault is over (the process
    /// restarted or resumed).
    fn inject(&mut self, fault: Fault, id: &str, rng: &mut Rng, recovery: &mut Recovery) -> String {
        match fault {
            Fault::KillTaskManager => {
                let i = rng.below(self.tms.len() as u64) as usize;
                self.tms[i].kill9();
                self.tms[i] = self.cluster.start_taskmanager(ONE_SLOT).0;
                format!("taskmanager {i} killed")
            }
            Fault::KillJobManager => {
                self.jm.kill9();
                self.jm = self.cluster.start_jobmanager().0;
                "jobmanager killed and restarted".into()
            }
            Fault::PauseStorage => {
                // The first storage outage lasts the full 15 s, later ones 3-15 s.
                let pause = if self.storage_paused {
                    Duration::from_millis(3_000 + rng.below(12_000))
                } else {
                    Duration::from_secs(15)
                };
                self.storage_paused = true;
                self.s3.signal(libc::SIGSTOP);
                self.watch(pause, id, recovery);
                self.s3.signal(libc::SIGCONT);
                format!("SeaweedFS paused {} ms", pause.as_millis())
            }
            Fault::PauseTaskManager => {
                let i = rng.below(self.tms.len() as u64) as usize;
                self.tms[i].signal(libc::SIGSTOP);
                self.watch(Duration::from_secs(4), id, recovery);
                self.tms[i].signal(libc::SIGCONT);
                format!("taskmanager {i} paused 4 s")
            }
            Fault::KillAllWhileFinishing => {
                let state = self
                    .cluster
                    .first_finished_sink_or(id, Instant::now() + Duration::from_secs(60));
                for tm in &mut self.tms {
                    tm.kill9();
                }
                self.tms = (0..3).map(|_| self.cluster.start_taskmanager(ONE_SLOT).0).collect();
                format!("every taskmanager killed (job {state})")
            }
        }
    }
}

#[test]
fn every_fault_leaves_the_committed_output_exact() {
    let rounds = env_u64("SLUICE_CHAOS_ROUNDS").unwrap_or(FAULTS.len() as u64);
    let seed = env_u64("SLUICE_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }) | 1;
    println!("chaos: {rounds} rounds, SLUICE_CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let s3 = SeaweedFs::start();
    // The lease outlasts a storage pause (a leader that cannot renew may not act); a restarted
    // jobmanager takes its own lease back at once. Checkpoint failures while storage is paused
    // are tolerated.
    let config = format!(
        "{}high-availability.type: object-store\nhigh-availability.storageDir: s3://{BUCKET}/ha\n\
         high-availability.cluster-id: chaos-{}\n\
         high-availability.object-store.lease-duration: 40 s\nhigh-availability.object-store.renew-interval: 2 s\n\
         heartbeat.interval: 500 ms\nheartbeat.timeout: 3 s\n\
         execution.checkpointing.dir: s3://{BUCKET}/checkpoints\nexecution.checkpointing.interval: 500 ms\n\
         execution.checkpointing.tolerable-failed-checkpoints: 1000\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 1000\n\
         restart-strategy.fixed-delay.delay: 200 ms\n",
        s3.config_lines(),
        std::process::id()
    );
    let mut cluster = Cluster::new(&config);
    let jm = cluster.start_jobmanager().0;
    let tms = (0..3).map(|_| cluster.start_taskmanager(ONE_SLOT).0).collect();
    cluster.wait_taskmanagers(3, Duration::from_secs(30));
    let mut chaos = Chaos {
        cluster,
        s3,
        jm,
        tms,
        storage_paused: false,
    };

    let mut tally = OutputTally::default();
    let mut recoveries: Vec<u128> = Vec::new();
    for round in 0..rounds {
        let fault = if round < FAULTS.len() as u64 {
            FAULTS[round as usize]
        } else {
            FAULTS[rng.below(FAULTS.len() as u64) as usize]
        };
        let out = chaos.cluster.config_dir().join(format!("out-{round}"));
        let id = chaos
            .cluster
            .submit(&JOB.yaml(&out, RATE, 2), &format!("chaos-{round}.yaml"));
        wait_or_explain(
            Duration::from_secs(60),
            || chaos.all_running(&id).then_some(()),
            || format!("round {round}: job running; logs:\n{}", chaos.cluster.log_tails(30)),
        );
        if !matches!(fault, Fault::KillAllWhileFinishing) {
            std::thread::sleep(Duration::from_millis(500 + rng.below(4_000)));
        }
        let mut recovery = Recovery {
            began: Instant::now(),
            down: false,
            up_after: None,
        };
        let what = chaos.inject(fault, &id, &mut rng, &mut recovery);
        wait_or_explain(
            Duration::from_secs(240),
            || match chaos.job_state(&id).as_str() {
                "FINISHED" => Some(()),
                "FAILED" | "CANCELED" => panic!("round {round}: job {id} ended {}", chaos.job_state(&id)),
                _ => {
                    recovery.observe(chaos.all_running(&id));
                    None
                }
            },
            || {
                format!(
                    "round {round}: job FINISHED after {what}; logs:\n{}",
                    chaos.cluster.log_tails(30)
                )
            },
        );
        // A job that went down and finished before it was seen running again is not timed.
        let recovered = recovery.up_after;
        if let Some(d) = recovered {
            recoveries.push(d.as_millis());
        }
        let t = JOB.tally(&out);
        println!(
            "round {round}: {what}; all tasks running again after {:?} ms; {} windows, {} missing, {} duplicated, {} wrong",
            recovered.map(|d| d.as_millis()),
            t.windows, t.missing, t.duplicated, t.wrong
        );
        tally += t;
    }
    recoveries.sort_unstable();
    let pct = |p: usize| {
        recoveries
            .get((recoveries.len() * p / 100).min(recoveries.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "chaos tally: rounds {rounds}, recoveries {}, recovery ms p50 {} p90 {} max {}, windows {}, missing {}, duplicated {}, wrong {}",
        recoveries.len(),
        pct(50),
        pct(90),
        recoveries.last().copied().unwrap_or(0),
        tally.windows,
        tally.missing,
        tally.duplicated,
        tally.wrong
    );
    assert_eq!((tally.missing, tally.duplicated, tally.wrong), (0, 0, 0), "chaos tally");
}
