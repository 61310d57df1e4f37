//! Tests that need an outside tool (Prometheus, Chromium, systemd-analyze, Docker, the Flink
//! CLI): where the tool is missing they print `SKIPPED` and pass, except under
//! `SLUICE_REQUIRE_TOOLS=1` (as `.ci/run` sets it), where they fail, so CI cannot pass by
//! skipping what `scripts/test.sh` failed to install.

use std::process::Command;

/// True when `program args…` runs and exits 0.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `SLUICE_REQUIRE_TOOLS=1` is set.
pub fn tools_required() -> bool {
    std::env::var("SLUICE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// For a test whose tool is `present`: true to go on; false (after printing `SKIPPED: why`)
/// to return early. Panics instead when tools are required.
pub fn have_tool(present: bool, why: &str) -> bool {
    have_tool_or(present, why, tools_required())
}

fn have_tool_or(present: bool, why: &str, required: bool) -> bool {
    if present {
        return true;
    }
    assert!(
        !required,
        "SLUICE_REQUIRE_TOOLS=1 and a tool this test needs is missing: {why}"
    );
    println!("SKIPPED: {why}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_skips_unless_required() {
        assert!(have_tool_or(true, "present", true));
        assert!(!have_tool_or(false, "missing", false));
    }

    #[test]
    #[should_panic(expected = "SLUICE_REQUIRE_TOOLS=1 and a tool this test needs is missing: no such tool")]
    fn a_missing_tool_fails_when_required() {
        have_tool_or(runs("sluice-no-such-tool", &["--version"]), "no such tool", true);
    }
}
