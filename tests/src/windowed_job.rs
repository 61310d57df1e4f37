//! The exactly-once reference job of the fault-tolerance tests: generated rows (`user_id` =
//! seq mod keys, `amount` = seq mod 10, event time = a fixed epoch + seq ms) → key by user →
//! 2 s tumbling windows with count and sum → file sink. `assert_exact` compares the committed
//! output with the reference computed here: every window once, none lost, none doubled.

use std::collections::BTreeMap;
use std::path::Path;

const EPOCH_MS: i64 = 1767225600000;

pub struct WindowedJob {
    pub rows: i64,
    pub keys: i64,
    /// Source splits (more than the widest parallelism, so every source subtask reads).
    pub splits: u32,
}

type Windows = BTreeMap<(String, i64), (i64, f64)>;

impl WindowedJob {
    /// The job file at `parallelism`, writing to `out`, generating `rate` rows per second.
    pub fn yaml(&self, out: &Path, rate: u32, parallelism: u32) -> String {
        self.yaml_with(out, &rate.to_string(), parallelism, "")
    }

    /// The job file with a datagen rate schedule (`rows-per-second`, e.g. `400 for 30 s, then
    /// 1200`) and the window summing `amount` through `cost` (e.g. `wait_cost(amount, 2000)`:
    /// each row costs the window 2 ms; the sums stay the reference's), at max parallelism 120
    /// (many divisors, as Flink advises autoscaled jobs).
    pub fn yaml_with(&self, out: &Path, rate: &str, parallelism: u32, cost: &str) -> String {
        let (rows, keys, splits) = (self.rows, self.keys, self.splits);
        let (max, amount) = if cost.is_empty() {
            ("", "amount")
        } else {
            ("max-parallelism: 120\n", cost)
        };
        format!(
            r#"name: exactly-once
parallelism: {parallelism}
{max}sources:
  - id: events
    connector: datagen
    options: {{number-of-rows: {rows}, splits: {splits}, rows-per-second: "{rate}"}}
    schema:
      - {{name: user_id, type: bigint, expr: "seq % {keys}"}}
      - {{name: amount,  type: double, expr: "CAST(seq % 10 AS DOUBLE)"}}
      - {{name: ts,      type: timestamp, expr: "to_timestamp_millis({EPOCH_MS} + seq)"}}
    watermark: {{column: ts, max-out-of-orderness: 0 ms}}
operators:
  - id: per-user
    input: events
    key-by: [user_id]
    window: {{type: tumbling, size: 2 s}}
    aggregate: {{n: "count(*)", total: "sum({amount})"}}
sinks:
  - id: out
    input: per-user
    connector: file
    options: {{path: "{}", format: json}}
"#,
            out.display()
        )
    }

    /// (window start ms, user) → (count, sum), as the job must commit it.
    pub fn windows(&self) -> BTreeMap<(i64, i64), (i64, f64)> {
        let mut m = BTreeMap::new();
        for seq in 0..self.rows {
            let ts = EPOCH_MS + seq;
            let e: &mut (i64, f64) = m.entry((ts - ts.rem_euclid(2000), seq % self.keys)).or_default();
            e.0 += 1;
            e.1 += (seq % 10) as f64;
        }
        m
    }

    /// Checks the committed output in `out` against the reference.
    pub fn assert_exact(&self, out: &Path) {
        let got = committed(out);
        let want = self.windows();
        let mut starts: BTreeMap<String, usize> = BTreeMap::new();
        for (s, _) in got.keys() {
            *starts.entry(s.clone()).or_default() += 1;
        }
        let partial: Vec<_> = starts.iter().filter(|(_, n)| **n != self.keys as usize).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "number of committed windows; {} window starts seen, incomplete ones: {partial:?}",
            starts.len()
        );
        let mut counts: Vec<(i64, i64)> = got.iter().map(|((_, k), (n, _))| (*k, *n)).collect();
        let mut expected: Vec<(i64, i64)> = want.iter().map(|((_, k), (n, _))| (*k, *n)).collect();
        counts.sort_unstable();
        expected.sort_unstable();
        assert_eq!(counts, expected, "per-window counts");
        let total: f64 = got.values().map(|v| v.1).sum();
        let want_total: f64 = want.values().map(|v| v.1).sum();
        assert!((total - want_total).abs() < 1e-6, "sum {total} vs {want_total}");
    }
}

/// Every committed row of the sink: (window start, user) → (count, sum) in file order.
fn rows(out: &Path) -> Vec<((String, i64), (i64, f64))> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return rows;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("part file").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            rows.push((
                (
                    v["window_start"].as_str().expect("window_start").to_string(),
                    v["user_id"].as_i64().expect("user_id"),
                ),
                (v["n"].as_i64().expect("n"), v["total"].as_f64().expect("total")),
            ));
        }
    }
    rows
}

/// Every committed row of the sink; a window seen twice fails the test.
fn committed(out: &Path) -> Windows {
    let mut got = Windows::new();
    for (key, value) in rows(out) {
        let prev = got.insert(key.clone(), value);
        assert!(prev.is_none(), "window {key:?} committed twice");
    }
    got
}

/// How a run's committed output differs from the reference.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct OutputTally {
    pub windows: usize,
    /// Reference windows (user, count, sum) nothing committed.
    pub missing: usize,
    /// Windows committed more than once.
    pub duplicated: usize,
    /// Committed windows that match no reference window (and are not duplicates).
    pub wrong: usize,
}

impl std::ops::AddAssign for OutputTally {
    fn add_assign(&mut self, o: OutputTally) {
        self.windows += o.windows;
        self.missing += o.missing;
        self.duplicated += o.duplicated;
        self.wrong += o.wrong;
    }
}

impl WindowedJob {
    /// Counts missing, duplicated and wrong windows in `out` without failing: windows are
    /// compared as (user, count, sum) multisets, duplicates by (window start, user).
    pub fn tally(&self, out: &Path) -> OutputTally {
        let got = rows(out);
        let mut seen = std::collections::HashSet::new();
        let duplicated = got.iter().filter(|(k, _)| !seen.insert(k.clone())).count();
        let signature = |user: i64, n: i64, sum: f64| (user, n, (sum * 1000.0).round() as i64);
        let mut want: BTreeMap<(i64, i64, i64), i64> = BTreeMap::new();
        for ((_, user), (n, sum)) in self.windows() {
            *want.entry(signature(user, n, sum)).or_default() += 1;
        }
        let mut extra = 0usize;
        for ((_, user), (n, sum)) in &got {
            match want.get_mut(&signature(*user, *n, *sum)) {
                Some(c) if *c > 0 => *c -= 1,
                _ => extra += 1,
            }
        }
        OutputTally {
            windows: self.windows().len(),
            missing: want.values().map(|c| *c as usize).sum(),
            duplicated,
            wrong: extra.saturating_sub(duplicated),
        }
    }
}
