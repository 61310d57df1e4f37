//! Reactive planning over random job graphs: whatever parallelism the job file declares per
//! source, operator or sink (above, below or mixed around the slots), a uniform plan runs every
//! vertex at the slots' parallelism, needs exactly that many slots and survives the plan round
//! trip; nothing panics.
use sluice_common::job::plan::to_plan;
use sluice_common::job::GraphOptions;

use crate::compile_job;
use crate::plan_tests::AnyConnector;

/// A small deterministic generator (xorshift), so a failure names a reproducible seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// `parallelism: k` for a node, or nothing (the job's default applies).
    fn parallelism(&mut self) -> String {
        match self.below(3) {
            0 => String::new(),
            1 => format!(", parallelism: {}", 1 + self.below(4)),
            _ => format!(", parallelism: {}", 1 + self.below(64)),
        }
    }
}

fn random_job(rng: &mut Rng) -> String {
    let sources = 1 + rng.below(3);
    let mut yaml = format!("name: random\nparallelism: {}\n", 1 + rng.below(40));
    if rng.below(2) == 0 {
        yaml += &format!("max-parallelism: {}\n", [64, 128, 256][rng.below(3) as usize]);
    }
    yaml += "sources:\n";
    for s in 0..sources {
        yaml += &format!(
            "  - {{id: s{s}, connector: datagen{}, schema: [{{name: k, type: bigint, expr: \"seq % 7\"}}, {{name: ts, type: timestamp, expr: \"seq\"}}], watermark: {{column: ts, max-out-of-orderness: 0 s}}}}\n",
            rng.parallelism()
        );
    }
    yaml += "operators:\n";
    let inputs: Vec<String> = (0..sources).map(|s| format!("s{s}")).collect();
    let mut last = "s0".to_string();
    if sources > 1 {
        yaml += &format!(
            "  - {{id: u, input: [{}], union: true{}}}\n",
            inputs.join(", "),
            rng.parallelism()
        );
        last = "u".into();
    }
    if rng.below(2) == 0 {
        yaml += &format!("  - {{id: f, input: {last}, filter: \"k > 1\"{}}}\n", rng.parallelism());
        last = "f".into();
    }
    yaml += &format!(
        "  - {{id: w, input: {last}, key-by: [k], window: {{type: tumbling, size: 1 s}}, aggregate: {{n: \"count(*)\"}}{}}}\n",
        rng.parallelism()
    );
    yaml += &format!(
        "sinks:\n  - {{id: out, input: w, connector: print{}}}\n",
        rng.parallelism()
    );
    yaml
}

#[test]
fn uniform_plans_run_every_vertex_at_the_slots_whatever_the_job_declares() {
    let mut planned = 0;
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let yaml = random_job(&mut rng);
        // As submitted: a declared parallelism above the max parallelism is an error, not a panic.
        let submitted = compile_job(&yaml, "random.yaml", &GraphOptions::default(), &AnyConnector);
        let Ok(submitted) = submitted else { continue };
        let slots = 1 + rng.below(12) as u32;
        // The scheduler's reactive target: the slots, within the max parallelism.
        let p = slots.min(submitted.max_parallelism);
        let options = GraphOptions {
            parallelism: Some(p),
            restored_max_parallelism: Some(submitted.max_parallelism),
            uniform: true,
            ..Default::default()
        };
        let graph = compile_job(&yaml, "random.yaml", &options, &AnyConnector)
            .unwrap_or_else(|e| panic!("seed {seed}, {slots} slots: {e}\n{yaml}"));
        assert!(
            graph.vertices.iter().all(|v| v.parallelism == p),
            "seed {seed}: every vertex at {p}\n{yaml}"
        );
        assert_eq!(graph.slots_needed(), p, "seed {seed}");
        assert!(to_plan(&graph).is_ok(), "seed {seed}");
        planned += 1;
    }
    // Only a declared parallelism above a declared max parallelism is refused at submission.
    assert!(planned >= 200, "only {planned} of 300 random jobs were planned");
}
