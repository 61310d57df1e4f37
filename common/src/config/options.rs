//! Every configuration key Sluice understands: Flink's names, Flink's defaults, the value type
//! of each, and the deprecated spellings still accepted. `KNOWN_OPTIONS` is the registry the
//! loader validates against; anything else in a config file is warned about by name.

use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::time::Duration;

use super::units::{parse_duration, MemorySize};

/// A value type an option can hold: how to parse it and how to describe the expected form.
pub trait OptionValue: Sized {
    /// What a valid value looks like, for error messages.
    const EXPECTED: &'static str;
    fn parse_value(raw: &str) -> Result<Self, String>;
}

impl OptionValue for MemorySize {
    const EXPECTED: &'static str =
        "a memory size: a whole number with an optional unit b, k/kb, m/mb, g/gb, t/tb (e.g. 1728m, 1 gb, 32kb)";
    fn parse_value(raw: &str) -> Result<Self, String> {
        MemorySize::parse(raw)
    }
}

impl OptionValue for Duration {
    const EXPECTED: &'static str =
        "a duration: a whole number with an optional unit ms, s, min, h, d (e.g. 30 s, 5 min); a bare number is milliseconds";
    fn parse_value(raw: &str) -> Result<Self, String> {
        parse_duration(raw)
    }
}

impl OptionValue for String {
    const EXPECTED: &'static str = "a string";
    fn parse_value(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
}

impl OptionValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse_value(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("'{other}' is not a boolean")),
        }
    }
}

impl OptionValue for f32 {
    const EXPECTED: &'static str = "a decimal number (e.g. 0.4)";
    fn parse_value(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<f32>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("'{}' is not a number", raw.trim()))
    }
}

impl OptionValue for u16 {
    const EXPECTED: &'static str = "a port number from 0 to 65535";
    fn parse_value(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<u16>()
            .map_err(|_| format!("'{}' is not a port number", raw.trim()))
    }
}

impl OptionValue for NonZeroU32 {
    const EXPECTED: &'static str = "a whole number of at least 1";
    fn parse_value(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<NonZeroU32>()
            .map_err(|_| format!("'{}' is not a whole number of at least 1", raw.trim()))
    }
}

impl OptionValue for u32 {
    const EXPECTED: &'static str = "a whole number from 0 to 4294967295";
    fn parse_value(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<u32>()
            .map_err(|_| format!("'{}' is not a whole number", raw.trim()))
    }
}

/// Declares an option type with a fixed set of spellings (case-insensitive, `-` and `_` alike).
macro_rules! choice {
    ($(#[$doc:meta])* $name:ident, $expected:literal, { $($variant:ident => [$($spelling:literal),+]),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl OptionValue for $name {
            const EXPECTED: &'static str = $expected;
            fn parse_value(raw: &str) -> Result<Self, String> {
                let norm = raw.trim().to_ascii_lowercase().replace('_', "-");
                $( if [$($spelling),+].contains(&norm.as_str()) { return Ok($name::$variant); } )+
                Err(format!("'{}' is not one of the accepted values", raw.trim()))
            }
        }
    };
}

choice!(
    /// `execution.checkpointing.mode`.
    CheckpointingMode, "EXACTLY_ONCE or AT_LEAST_ONCE", {
        ExactlyOnce => ["exactly-once"],
        AtLeastOnce => ["at-least-once"],
    }
);

choice!(
    /// `state.backend.type` (Flink's legacy names for the heap backend are accepted).
    StateBackendKind, "hashmap or rocksdb", {
        HashMap => ["hashmap", "filesystem", "jobmanager", "heap"],
        RocksDb => ["rocksdb"],
    }
);

choice!(
    /// `table.optimizer.agg-phase-strategy`: whether a windowed aggregate pre-aggregates before
    /// its shuffle (Flink's local-global aggregation).
    AggPhaseStrategy, "AUTO, ONE_PHASE or TWO_PHASE", {
        Auto => ["auto"],
        OnePhase => ["one-phase"],
        TwoPhase => ["two-phase"],
    }
);

choice!(
    /// `scheduler-mode`: unset (the default scheduler) or reactive.
    SchedulerMode, "reactive", {
        Reactive => ["reactive"],
    }
);

choice!(
    /// `high-availability.type`: none, or Sluice's HA services in the object store (Flink's
    /// zookeeper and kubernetes are not offered: the object store needs neither).
    HighAvailabilityKind, "NONE or object-store", {
        None => ["none"],
        ObjectStore => ["object-store", "objectstore", "s3"],
    }
);

choice!(
    /// `restart-strategy.type`.
    RestartStrategyKind, "none, fixed-delay, failure-rate or exponential-delay", {
        None => ["none", "off", "disable"],
        FixedDelay => ["fixed-delay", "fixeddelay"],
        FailureRate => ["failure-rate", "failurerate"],
        ExponentialDelay => ["exponential-delay", "exponentialdelay"],
    }
);

/// Ports as Flink accepts them for `taskmanager.rpc.port` and `metrics.reporter.prom.port`:
/// `0` (any free port), `9249`, `9250-9260`, or a comma-separated mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange(pub Vec<(u16, u16)>);

impl PortRange {
    /// Ports to try in order.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().flat_map(|(lo, hi)| *lo..=*hi)
    }
}

impl OptionValue for PortRange {
    const EXPECTED: &'static str =
        "a port (0 = any free port), a range like 9250-9260, or a comma-separated list of those";
    fn parse_value(raw: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in raw.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo = lo
                .parse::<u16>()
                .map_err(|_| format!("'{part}' is not a port or port range"))?;
            let hi = hi
                .parse::<u16>()
                .map_err(|_| format!("'{part}' is not a port or port range"))?;
            if lo > hi {
                return Err(format!("port range '{part}' ends before it starts"));
            }
            ranges.push((lo, hi));
        }
        Ok(PortRange(ranges))
    }
}

/// A typed configuration key with its Flink default (as text, parsed like any value).
pub struct ConfigOption<T> {
    pub key: &'static str,
    pub default: Option<&'static str>,
    /// Older names still accepted (read when `key` is absent), e.g. `state.backend`.
    pub deprecated_keys: &'static [&'static str],
    _type: PhantomData<fn() -> T>,
}

impl<T> ConfigOption<T> {
    pub const fn new(key: &'static str, default: Option<&'static str>) -> Self {
        ConfigOption {
            key,
            default,
            deprecated_keys: &[],
            _type: PhantomData,
        }
    }

    pub const fn deprecated(mut self, keys: &'static [&'static str]) -> Self {
        self.deprecated_keys = keys;
        self
    }
}

/// Flink's `ConfigOption.toString()`, which some of Flink's error texts embed verbatim.
impl<T> std::fmt::Display for ConfigOption<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fallbacks: Vec<String> = self
            .deprecated_keys
            .iter()
            .map(|k| format!("{{key={k}, isDeprecated=true}}"))
            .collect();
        write!(
            f,
            "Key: '{}' , default: {} (fallback keys: [{}])",
            self.key,
            self.default.unwrap_or("null"),
            fallbacks.join(", ")
        )
    }
}

/// The untyped view of an option the loader validates against.
pub trait KnownOption: Sync {
    fn key(&self) -> &'static str;
    fn deprecated_keys(&self) -> &'static [&'static str];
    fn default_value(&self) -> Option<&'static str>;
    fn expected(&self) -> &'static str;
    /// Parses `raw` as this option's type, returning Flink's reason on failure.
    fn check(&self, raw: &str) -> Result<(), String>;
}

impl<T: OptionValue> KnownOption for ConfigOption<T> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn deprecated_keys(&self) -> &'static [&'static str] {
        self.deprecated_keys
    }
    fn default_value(&self) -> Option<&'static str> {
        self.default
    }
    fn expected(&self) -> &'static str {
        T::EXPECTED
    }
    fn check(&self, raw: &str) -> Result<(), String> {
        T::parse_value(raw).map(|_| ())
    }
}

macro_rules! options {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $key:literal, $default:expr $(, deprecated $dep:expr)? ; )*) => {
        $(
            $(#[$doc])*
            pub const $name: ConfigOption<$ty> = ConfigOption::new($key, $default) $(.deprecated($dep))?;
        )*
        /// Every option Sluice reads.
        pub static KNOWN_OPTIONS: &[&dyn KnownOption] = &[$(&$name),*];
    };
}

options! {
    // ---- jobmanager addresses and ports
    /// Address taskmanagers and clients use to reach the jobmanager.
    JOBMANAGER_RPC_ADDRESS: String = "jobmanager.rpc.address", Some("localhost");
    JOBMANAGER_RPC_PORT: u16 = "jobmanager.rpc.port", Some("6123");
    /// Interface the jobmanager's RPC server binds to (default: all interfaces).
    JOBMANAGER_BIND_HOST: String = "jobmanager.bind-host", None;
    /// Address the `sluice` CLI connects to.
    REST_ADDRESS: String = "rest.address", None;
    REST_PORT: u16 = "rest.port", Some("8081");
    /// Interface the REST server binds to (default: all interfaces).
    REST_BIND_ADDRESS: String = "rest.bind-address", None;
    /// Port (or range) the REST server binds to; falls back to `rest.port`.
    REST_BIND_PORT: PortRange = "rest.bind-port", None;

    // ---- taskmanager membership
    TASK_SLOTS: NonZeroU32 = "taskmanager.numberOfTaskSlots", Some("1");
    /// Address other processes use to reach this taskmanager; detected when absent.
    TASKMANAGER_HOST: String = "taskmanager.host", None;
    TASKMANAGER_BIND_HOST: String = "taskmanager.bind-host", None;
    TASKMANAGER_RPC_PORT: PortRange = "taskmanager.rpc.port", Some("0");
    TASKMANAGER_DATA_PORT: u16 = "taskmanager.data.port", Some("0");
    /// Fixed id of this taskmanager; generated (host:port-random) when absent.
    TASKMANAGER_RESOURCE_ID: String = "taskmanager.resource-id", None;
    /// On SIGTERM, how long a taskmanager running reactive jobs waits for them to rescale off
    /// it (stop-with-checkpoint: nothing replayed) before it deregisters and exits. Sluice's
    /// own option; 0 (the default, as Flink) leaves at once and its jobs fail over from their
    /// latest checkpoint, which pauses them less when a checkpoint is large (BENCHMARKS.md,
    /// R1 of session 14). Raise the service manager's stop timeout above it.
    GRACEFUL_SHUTDOWN_TIMEOUT: Duration = "taskmanager.graceful-shutdown.timeout", Some("0 s");
    HEARTBEAT_INTERVAL: Duration = "heartbeat.interval", Some("10 s");
    HEARTBEAT_TIMEOUT: Duration = "heartbeat.timeout", Some("50 s");
    /// First pause between registration attempts; doubles up to the max.
    REGISTRATION_INITIAL_TIMEOUT: Duration = "cluster.registration.initial-timeout", Some("100 ms");
    REGISTRATION_MAX_TIMEOUT: Duration = "cluster.registration.max-timeout", Some("30 s");

    // ---- high availability (jobmanager failover through the object store)
    HA_TYPE: HighAvailabilityKind = "high-availability.type", Some("NONE"), deprecated &["high-availability"];
    /// Where the HA services keep the leader lease and the submitted jobs (a file:// or s3://
    /// URL, like the checkpoint directory).
    HA_STORAGE_DIR: String = "high-availability.storageDir", None, deprecated &["high-availability.storage-dir"];
    /// Separates clusters sharing one storage dir.
    HA_CLUSTER_ID: String = "high-availability.cluster-id", Some("/default");
    /// How long a leader's lease lasts without renewal before a standby may take over
    /// (Flink's Kubernetes HA uses 15 s for its lease).
    HA_LEASE_DURATION: Duration = "high-availability.object-store.lease-duration", Some("15 s");
    /// How often the leader renews its lease and a standby looks at it.
    HA_RENEW_INTERVAL: Duration = "high-availability.object-store.renew-interval", Some("5 s");

    // ---- metrics
    PROMETHEUS_PORT: PortRange = "metrics.reporter.prom.port", Some("9249");
    /// Sluice's own: a directory where each daemon writes a Prometheus `file_sd_configs` target
    /// file for its metrics address (removed when it stops). Unset: none is written.
    PROMETHEUS_FILE_SD_DIR: String = "metrics.reporter.prom.file-sd-dir", None;
    /// Accepted for Flink compatibility; Sluice always serves Prometheus text.
    PROMETHEUS_FACTORY_CLASS: String = "metrics.reporter.prom.factory.class", None;

    // ---- jobs (read by the scheduler)
    PARALLELISM_DEFAULT: NonZeroU32 = "parallelism.default", Some("1");
    /// How long a job waits for the slots it needs before it fails.
    RESOURCE_WAIT_TIMEOUT: Duration = "jobmanager.adaptive-scheduler.resource-wait-timeout", Some("5 min");
    /// `reactive`: every vertex runs at min(its max parallelism, the job's share of slots).
    SCHEDULER_MODE: SchedulerMode = "scheduler-mode", None;
    /// How long the slots must stay unchanged before a running reactive job scales up (Flink's
    /// reactive default: 0).
    RESOURCE_STABILIZATION_TIMEOUT: Duration = "jobmanager.adaptive-scheduler.resource-stabilization-timeout", Some("0 ms");
    /// The smallest rise of a reactive job's summed vertex parallelism worth a rescale.
    MIN_PARALLELISM_INCREASE: NonZeroU32 = "jobmanager.adaptive-scheduler.min-parallelism-increase", Some("1");
    /// A rescale first takes a checkpoint while the job runs, then stops with one (FLIP-461's
    /// active trigger): with incremental checkpoints the stop then uploads only what changed
    /// since, so the pause is shorter. Full snapshots gain nothing: they stop at once.
    RESCALE_ACTIVE_CHECKPOINT: bool = "jobmanager.adaptive-scheduler.rescale-trigger.active-checkpoint.enabled", Some("true");
    IO_TMP_DIRS: String = "io.tmp.dirs", None;
    /// How often a source subtask emits the watermark its rows have advanced (Flink's periodic
    /// watermarks). Zero: after every batch (Flink's 0 turns periodic watermarks off).
    AUTO_WATERMARK_INTERVAL: Duration = "pipeline.auto-watermark-interval", Some("200 ms");

    // ---- the autoscaler (Flink's `job.autoscaler.*` keys and defaults; the Kubernetes
    // operator's `kubernetes.operator.job.autoscaler.*` spellings are the same keys)
    AUTOSCALER_ENABLED: bool = "job.autoscaler.enabled", Some("false"), deprecated &["kubernetes.operator.job.autoscaler.enabled"];
    /// How much history the decisions look at.
    AUTOSCALER_METRICS_WINDOW: Duration = "job.autoscaler.metrics.window", Some("15 min"), deprecated &["kubernetes.operator.job.autoscaler.metrics.window"];
    /// How long after a (re)start no metrics are collected.
    AUTOSCALER_STABILIZATION_INTERVAL: Duration = "job.autoscaler.stabilization.interval", Some("5 min"), deprecated &["kubernetes.operator.job.autoscaler.stabilization.interval"];
    AUTOSCALER_TARGET_UTILIZATION: f32 = "job.autoscaler.target.utilization", Some("0.7"), deprecated &["kubernetes.operator.job.autoscaler.target.utilization"];
    /// No action while utilization stays within target ± boundary.
    AUTOSCALER_TARGET_UTILIZATION_BOUNDARY: f32 = "job.autoscaler.target.utilization.boundary", Some("0.3"), deprecated &["kubernetes.operator.job.autoscaler.target.utilization.boundary"];
    /// How fast a backlog must be worked off after a rescale.
    AUTOSCALER_CATCH_UP_DURATION: Duration = "job.autoscaler.catch-up.duration", Some("30 min"), deprecated &["kubernetes.operator.job.autoscaler.catch-up.duration"];
    /// The time a rescale takes, whose input must be caught up as well.
    AUTOSCALER_RESTART_TIME: Duration = "job.autoscaler.restart.time", Some("5 min"), deprecated &["kubernetes.operator.job.autoscaler.restart.time"];
    AUTOSCALER_SCALE_UP_MAX_FACTOR: f32 = "job.autoscaler.scale-up.max-factor", Some("100000.0"), deprecated &["kubernetes.operator.job.autoscaler.scale-up.max-factor"];
    AUTOSCALER_SCALE_DOWN_MAX_FACTOR: f32 = "job.autoscaler.scale-down.max-factor", Some("0.6"), deprecated &["kubernetes.operator.job.autoscaler.scale-down.max-factor"];
    AUTOSCALER_VERTEX_MIN_PARALLELISM: NonZeroU32 = "job.autoscaler.vertex.min-parallelism", Some("1"), deprecated &["kubernetes.operator.job.autoscaler.vertex.min-parallelism"];
    AUTOSCALER_VERTEX_MAX_PARALLELISM: NonZeroU32 = "job.autoscaler.vertex.max-parallelism", Some("200"), deprecated &["kubernetes.operator.job.autoscaler.vertex.max-parallelism"];
    /// A scale-down runs only once it has been wanted this long (scale-ups run at once).
    AUTOSCALER_SCALE_DOWN_INTERVAL: Duration = "job.autoscaler.scale-down.interval", Some("1 h"), deprecated &["kubernetes.operator.job.autoscaler.scale-down.interval", "job.autoscaler.scale-up.grace-period"];
    /// A scale-up that achieved less than this share of the expected rise is ineffective.
    AUTOSCALER_EFFECTIVENESS_THRESHOLD: f32 = "job.autoscaler.scaling.effectiveness.threshold", Some("0.1"), deprecated &["kubernetes.operator.job.autoscaler.scaling.effectiveness.threshold"];
    /// Block further scale-ups of a vertex whose last scale-up was ineffective.
    AUTOSCALER_EFFECTIVENESS_DETECTION: bool = "job.autoscaler.scaling.effectiveness.detection.enabled", Some("false"), deprecated &["kubernetes.operator.job.autoscaler.scaling.effectiveness.detection.enabled"];
    /// Sluice's own: a command run when a decision needs more (or fewer) taskmanagers than
    /// run, with `{taskmanagers}` (and `{slots}`) replaced, e.g.
    /// `docker-compose up -d --scale taskmanager={taskmanagers}`.
    AUTOSCALER_TASKMANAGER_COMMAND: String = "sluice.autoscaler.taskmanager-command", None;

    // ---- checkpoints (Flink 2 names; the 1.x names are accepted)
    /// Checkpoint every this long; absent = no checkpoints.
    CHECKPOINT_INTERVAL: Duration = "execution.checkpointing.interval", None;
    /// Where checkpoints go: file:///path or s3://bucket/prefix.
    CHECKPOINTS_DIR: String = "execution.checkpointing.dir", None, deprecated &["state.checkpoints.dir"];
    SAVEPOINTS_DIR: String = "execution.checkpointing.savepoint-dir", None, deprecated &["state.savepoints.dir"];
    CHECKPOINTS_RETAINED: NonZeroU32 = "execution.checkpointing.num-retained", Some("1"), deprecated &["state.checkpoints.num-retained"];
    CHECKPOINT_MODE: CheckpointingMode = "execution.checkpointing.mode", Some("EXACTLY_ONCE");
    /// Flink's final checkpoints (FLIP-147): a subtask at the end of its input waits for a
    /// checkpoint that covers it, and sinks commit their last data only through it.
    CHECKPOINTS_AFTER_TASKS_FINISH: bool = "execution.checkpointing.checkpoints-after-tasks-finish", Some("true"), deprecated &["execution.checkpointing.checkpoints-after-tasks-finish.enabled"];
    /// A checkpoint not complete after this long is aborted.
    CHECKPOINT_TIMEOUT: Duration = "execution.checkpointing.timeout", Some("10 min");
    /// Least time between the end of one checkpoint and the start of the next.
    CHECKPOINT_MIN_PAUSE: Duration = "execution.checkpointing.min-pause", Some("0 ms");
    CHECKPOINT_MAX_CONCURRENT: NonZeroU32 = "execution.checkpointing.max-concurrent-checkpoints", Some("1");
    /// Consecutive failed checkpoints tolerated before the job fails.
    CHECKPOINT_TOLERABLE_FAILED: u32 = "execution.checkpointing.tolerable-failed-checkpoints", Some("0");
    /// RocksDB uploads only new SST files per checkpoint.
    CHECKPOINT_INCREMENTAL: bool = "execution.checkpointing.incremental", Some("false"), deprecated &["state.backend.incremental"];
    /// Full keyed snapshots (the heap backend's, savepoints) compress each key group's block
    /// on its own (zstd, level 1), so a restore still reads only its key groups. Flink's key
    /// (which compresses with Snappy); off by default, as in Flink.
    SNAPSHOT_COMPRESSION: bool = "execution.checkpointing.snapshot-compression", Some("false");

    // ---- state backends
    /// Flink SQL's idle state retention: keyed state of a continuous aggregate not written for
    /// this long expires (0: never). An operator's `state.ttl` overrides it.
    TABLE_EXEC_STATE_TTL: Duration = "table.exec.state.ttl", Some("0 ms");
    /// Two-phase (local-global) windowed aggregation: TWO_PHASE whenever the aggregates can be
    /// merged, AUTO only with mini-batch enabled (Flink's rule), ONE_PHASE never.
    TABLE_OPTIMIZER_AGG_PHASE_STRATEGY: AggPhaseStrategy = "table.optimizer.agg-phase-strategy", Some("AUTO");
    /// Buffers rows before the shuffle (here: the local phase of a two-phase aggregate).
    TABLE_EXEC_MINI_BATCH_ENABLED: bool = "table.exec.mini-batch.enabled", Some("false");
    /// The (pane, key) entries a local aggregate holds before it flushes its partial results
    /// (it also flushes at every watermark and checkpoint barrier); 0: as many as a quarter of
    /// the slot's heap budget holds. Flink counts buffered input records here (and its window
    /// local phase buffers by managed memory); Sluice's local phase aggregates as rows arrive,
    /// so what it holds, and what memory it takes, is one entry per key and pane.
    TABLE_EXEC_MINI_BATCH_SIZE: u32 = "table.exec.mini-batch.size", Some("0");
    /// Accepted for Flink compatibility: the local phase flushes at every watermark and
    /// barrier, which bounds its latency by the watermark interval.
    TABLE_EXEC_MINI_BATCH_ALLOW_LATENCY: Duration = "table.exec.mini-batch.allow-latency", Some("0 ms");
    STATE_BACKEND: StateBackendKind = "state.backend.type", Some("hashmap"), deprecated &["state.backend"];
    /// RocksDB's block cache and write buffers come out of the slot's managed memory.
    ROCKSDB_MEMORY_MANAGED: bool = "state.backend.rocksdb.memory.managed", Some("true");
    ROCKSDB_WRITE_BUFFER_RATIO: f32 = "state.backend.rocksdb.memory.write-buffer-ratio", Some("0.5");
    /// On a rescale, a RocksDB instance opened from an old subtask's files also drops the SST
    /// files that hold only key groups outside its range (besides the range deletes).
    ROCKSDB_DELETE_FILES_IN_RANGE: bool = "state.backend.rocksdb.rescaling.use-delete-files-in-range", Some("false");
    /// Compactions cut their output files where the key group changes (RocksDB's fixed-prefix
    /// SST partitioner over the key's two key-group bytes), so every file below level 0 holds
    /// one key group: a rescaled subtask fetches only the files of the key groups it takes,
    /// and whole files of the others go. Sluice's own option (Flink has none). Off by default:
    /// with 1 GB of state the many small files loaded slower and opened slower on restore
    /// than the fetch saved (BENCHMARKS.md, R1 of session 10).
    ROCKSDB_FILE_PER_KEY_GROUP: bool = "state.backend.rocksdb.compaction.file-per-key-group", Some("false");
    /// With local recovery, a rescale's prepared stop waits until the taskmanagers of the next
    /// attempt prefetched the prepared checkpoint's files (`scheduler/prefetch.rs`). Sluice's
    /// own option, on by default: with compactions held from the prepare to the stop, the
    /// restore in the pause downloads only the flushes since (BENCHMARKS.md, R1 of session 15;
    /// before the hold, compactions grew the stop by more than the prefetch saved).
    ROCKSDB_RESCALE_PREFETCH: bool = "state.backend.rocksdb.rescaling.prefetch", Some("true");
    /// Local recovery: restore from the taskmanager's local copy of the last checkpoint's
    /// state, downloading only what it lacks.
    STATE_RECOVERY_FROM_LOCAL: bool = "execution.state-recovery.from-local", Some("false"), deprecated &["state.backend.local-recovery"];
    /// Standby copies: with local recovery and incremental RocksDB checkpoints, every
    /// taskmanager fetches each completed periodic checkpoint's SST files of the subtasks it
    /// does not run into its local copies, in the background (as Kafka Streams' standby
    /// replicas), so a failover or scale-down whose subtasks take over another taskmanager's
    /// key groups reads them locally instead of downloading them in the pause. Sluice's own
    /// option, off by default: it costs every taskmanager the disk of the whole job's state
    /// and the checkpoint storage a read of every new file per taskmanager.
    STATE_RECOVERY_STANDBY_COPIES: bool = "execution.state-recovery.standby-copies", Some("false");
    /// Keep a local copy of each checkpoint's keyed state (RocksDB: hard links of its SST
    /// files). Unset: as `execution.state-recovery.from-local`.
    LOCAL_BACKUP_ENABLED: bool = "execution.checkpointing.local-backup.enabled", None;
    /// Where local copies go (the first of a list separated by ',' or ':'); unset:
    /// `<io.tmp.dirs>/localState`. Each taskmanager keeps its own `tm_<resource id>` under it.
    LOCAL_STATE_ROOT_DIRS: String = "taskmanager.state.local.root-dirs", None;
    /// Accepted for Flink compatibility; the RocksDB binding has no high-priority cache pool,
    /// so index and filter blocks share the one block cache.
    ROCKSDB_HIGH_PRIO_POOL_RATIO: f32 = "state.backend.rocksdb.memory.high-prio-pool-ratio", Some("0.1");

    // ---- restart strategies (Flink's RestartStrategyOptions)
    /// Default: exponential-delay with checkpointing, none without.
    RESTART_STRATEGY: RestartStrategyKind = "restart-strategy.type", None, deprecated &["restart-strategy"];
    RESTART_FIXED_DELAY_ATTEMPTS: u32 = "restart-strategy.fixed-delay.attempts", Some("1");
    RESTART_FIXED_DELAY_DELAY: Duration = "restart-strategy.fixed-delay.delay", Some("1 s");
    RESTART_FAILURE_RATE_MAX: u32 = "restart-strategy.failure-rate.max-failures-per-interval", Some("1");
    RESTART_FAILURE_RATE_INTERVAL: Duration = "restart-strategy.failure-rate.failure-rate-interval", Some("1 min");
    RESTART_FAILURE_RATE_DELAY: Duration = "restart-strategy.failure-rate.delay", Some("1 s");
    RESTART_EXP_INITIAL_BACKOFF: Duration = "restart-strategy.exponential-delay.initial-backoff", Some("1 s");
    RESTART_EXP_MAX_BACKOFF: Duration = "restart-strategy.exponential-delay.max-backoff", Some("1 min");
    RESTART_EXP_MULTIPLIER: f32 = "restart-strategy.exponential-delay.backoff-multiplier", Some("1.5");
    RESTART_EXP_RESET_THRESHOLD: Duration = "restart-strategy.exponential-delay.reset-backoff-threshold", Some("1 h");
    RESTART_EXP_JITTER: f32 = "restart-strategy.exponential-delay.jitter-factor", Some("0.1");
    RESTART_EXP_ATTEMPTS: u32 = "restart-strategy.exponential-delay.attempts-before-reset-backoff", Some("2147483647");
    S3_ENDPOINT: String = "s3.endpoint", None;
    S3_ACCESS_KEY: String = "s3.access-key", None;
    S3_SECRET_KEY: String = "s3.secret-key", None;
    S3_PATH_STYLE_ACCESS: bool = "s3.path.style.access", Some("false");
    S3_REGION: String = "s3.region", Some("us-east-1");

    // ---- taskmanager memory (Flink's TaskManagerOptions)
    TM_PROCESS_SIZE: MemorySize = "taskmanager.memory.process.size", None;
    TM_FLINK_SIZE: MemorySize = "taskmanager.memory.flink.size", None;
    TM_FRAMEWORK_HEAP: MemorySize = "taskmanager.memory.framework.heap.size", Some("128 mb");
    TM_TASK_HEAP: MemorySize = "taskmanager.memory.task.heap.size", None;
    TM_MANAGED_SIZE: MemorySize = "taskmanager.memory.managed.size", None;
    TM_MANAGED_FRACTION: f32 = "taskmanager.memory.managed.fraction", Some("0.4");
    TM_MANAGED_CONSUMER_WEIGHTS: String = "taskmanager.memory.managed.consumer-weights", Some("OPERATOR:70,STATE_BACKEND:70,PYTHON:30");
    TM_FRAMEWORK_OFF_HEAP: MemorySize = "taskmanager.memory.framework.off-heap.size", Some("128 mb");
    TM_FRAMEWORK_OFF_HEAP_BATCH_SHUFFLE: MemorySize = "taskmanager.memory.framework.off-heap.batch-shuffle.size", Some("32 mb");
    TM_TASK_OFF_HEAP: MemorySize = "taskmanager.memory.task.off-heap.size", Some("0 bytes");
    TM_NETWORK_MIN: MemorySize = "taskmanager.memory.network.min", Some("64 mb"), deprecated &["taskmanager.network.memory.min"];
    TM_NETWORK_MAX: MemorySize = "taskmanager.memory.network.max", Some("9223372036854775807 bytes"), deprecated &["taskmanager.network.memory.max"];
    TM_NETWORK_FRACTION: f32 = "taskmanager.memory.network.fraction", Some("0.1"), deprecated &["taskmanager.network.memory.fraction"];
    TM_JVM_METASPACE: MemorySize = "taskmanager.memory.jvm-metaspace.size", Some("256 mb");
    TM_JVM_OVERHEAD_MIN: MemorySize = "taskmanager.memory.jvm-overhead.min", Some("192 mb");
    TM_JVM_OVERHEAD_MAX: MemorySize = "taskmanager.memory.jvm-overhead.max", Some("1 gb");
    TM_JVM_OVERHEAD_FRACTION: f32 = "taskmanager.memory.jvm-overhead.fraction", Some("0.1");
    TM_SEGMENT_SIZE: MemorySize = "taskmanager.memory.segment-size", Some("32 kb");
    TM_MIN_SEGMENT_SIZE: MemorySize = "taskmanager.memory.min-segment-size", Some("256 bytes");
    NETWORK_BUFFERS_PER_CHANNEL: NonZeroU32 = "taskmanager.network.memory.buffers-per-channel", Some("2");
    NETWORK_FLOATING_BUFFERS_PER_GATE: NonZeroU32 = "taskmanager.network.memory.floating-buffers-per-gate", Some("8");
    NETWORK_MAX_BUFFERS_PER_CHANNEL: NonZeroU32 = "taskmanager.network.memory.max-buffers-per-channel", Some("10");

    // ---- jobmanager memory (Flink's JobManagerOptions)
    JM_PROCESS_SIZE: MemorySize = "jobmanager.memory.process.size", None;
    JM_FLINK_SIZE: MemorySize = "jobmanager.memory.flink.size", None;
    JM_HEAP: MemorySize = "jobmanager.memory.heap.size", None;
    JM_OFF_HEAP: MemorySize = "jobmanager.memory.off-heap.size", Some("128 mb");
    JM_ENABLE_DIRECT_LIMIT: bool = "jobmanager.memory.enable-jvm-direct-memory-limit", Some("false");
    JM_JVM_METASPACE: MemorySize = "jobmanager.memory.jvm-metaspace.size", Some("256 mb");
    JM_JVM_OVERHEAD_MIN: MemorySize = "jobmanager.memory.jvm-overhead.min", Some("192 mb");
    JM_JVM_OVERHEAD_MAX: MemorySize = "jobmanager.memory.jvm-overhead.max", Some("1 gb");
    JM_JVM_OVERHEAD_FRACTION: f32 = "jobmanager.memory.jvm-overhead.fraction", Some("0.1");
}

/// Finds the registered option for `key`, under its name or a deprecated one.
pub fn find_option(key: &str) -> Option<&'static dyn KnownOption> {
    KNOWN_OPTIONS
        .iter()
        .copied()
        .find(|o| o.key() == key || o.deprecated_keys().contains(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses_as_its_type() {
        for option in KNOWN_OPTIONS {
            if let Some(default) = option.default_value() {
                assert!(option.check(default).is_ok(), "{} default {default}", option.key());
            }
        }
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = KNOWN_OPTIONS
            .iter()
            .flat_map(|o| std::iter::once(o.key()).chain(o.deprecated_keys().iter().copied()))
            .collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn port_ranges() {
        let r = PortRange::parse_value("9250-9252, 9300").unwrap();
        assert_eq!(r.ports().collect::<Vec<_>>(), vec![9250, 9251, 9252, 9300]);
        assert!(PortRange::parse_value("9260-9250").is_err());
        assert!(PortRange::parse_value("http").is_err());
        assert_eq!(
            PortRange::parse_value("0").unwrap().ports().collect::<Vec<_>>(),
            vec![0]
        );
    }

    #[test]
    fn flink_option_to_string() {
        assert_eq!(
            TM_PROCESS_SIZE.to_string(),
            "Key: 'taskmanager.memory.process.size' , default: null (fallback keys: [])"
        );
        assert!(TM_NETWORK_FRACTION
            .to_string()
            .contains("{key=taskmanager.network.memory.fraction, isDeprecated=true}"));
    }
}
