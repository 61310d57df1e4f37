//! `taskmanager --print-memory` and configuration errors, through the real binaries.

use std::path::Path;
use std::process::{Command, Output};

use sluice_tests::binary;

fn run(bin: &str, config_yaml: Option<&str>, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(binary(bin));
    cmd.env_remove("SLUICE_PROPERTIES").env_remove("SLUICE_CONF_DIR");
    if let Some(yaml) = config_yaml {
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("config.yaml");
        cmd.arg("--config-dir").arg(dir.path());
    }
    cmd.args(args).output().expect("run binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn print_memory_text_and_json() {
    let out = run(
        "taskmanager",
        Some("taskmanager.memory.process.size: 1728m\n"),
        &["--print-memory"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("Final TaskExecutor Memory configuration:\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    Total Flink Memory:          1.250gb (1342177280 bytes)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("        Managed:                 512.000mb (536870920 bytes)\n"),
        "{stdout}"
    );
    // After Flink's breakdown, what Sluice itself enforces per slot.
    assert!(stdout.contains("Task heap per slot:"), "{stdout}");
    assert!(stdout.contains("Managed memory per slot:"), "{stdout}");
    assert!(
        stdout.contains("Network buffers:               4096 of 32.000kb"),
        "{stdout}"
    );

    let out = run(
        "taskmanager",
        Some("taskmanager.memory.process.size: 1728m\n"),
        &[
            "--print-memory",
            "--format",
            "json",
            "-D",
            "taskmanager.memory.process.size=2g",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["taskmanager.memory.process.size"], 2u64 << 30);
    let network = json["taskmanager.memory.network.min"].as_u64().expect("network.min");
    assert_eq!(json["taskmanager.memory.network.max"].as_u64(), Some(network));
    assert!((network as f64 / 1048576.0 - 158.72).abs() < 0.001);
    for key in [
        "taskmanager.memory.framework.heap.size",
        "taskmanager.memory.task.heap.size",
        "taskmanager.memory.managed.size",
        "taskmanager.memory.framework.off-heap.size",
        "taskmanager.memory.task.off-heap.size",
        "taskmanager.memory.jvm-metaspace.size",
        "taskmanager.memory.jvm-overhead.min",
        "taskmanager.memory.jvm-overhead.max",
        "taskmanager.memory.flink.size",
    ] {
        assert!(json[key].is_u64(), "missing {key}: {json}");
    }
}

#[test]
fn bad_memory_config_exits_non_zero_with_flinks_message() {
    let out = run(
        "taskmanager",
        Some("taskmanager.memory.process.size: 400m\n"),
        &["--print-memory"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("TaskManager memory configuration failed: Sum of configured JVM Metaspace (256.000mb (268435456 bytes)) and JVM Overhead (192.000mb (201326592 bytes)) exceed configured Total Process Memory (400.000mb (419430400 bytes))."), "{err}");

    // Flink 2.3's wording, verbatim (double space included).
    let out = run(
        "taskmanager",
        Some("taskmanager.memory.process.size: 8g\ntaskmanager.memory.task.heap.size: 8g\ntaskmanager.memory.managed.size: 2g\n"),
        &["--print-memory"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("TaskManager memory configuration failed: The configured Total Process Memory size (8.000gb (8589934592 bytes)) is less than the sum of the derived Total Flink Memory size (11.389gb (12228726349 bytes)) and the configured or default JVM Metaspace size  (256.000mb (268435456 bytes))."), "{err}");

    let out = run("taskmanager", Some("parallelism.default: 1\n"), &["--print-memory"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(
        "Either required fine-grained memory (taskmanager.memory.task.heap.size and taskmanager.memory.managed.size)"
    ));
}

#[test]
fn misspelt_and_foreign_keys_get_a_hint() {
    let out = run(
        "taskmanager",
        Some("taskmanager.memory.proces.size: 1728m\ntaskmanager.memory.process.size: 1728m\ntaskmanager.memory.jvm-heap.size: 1g\ntaskmanager.memory.managed.size: 256m\ntaskmanager.memory.managed.fraction: 0.5\n"),
        &["--print-memory"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Did you mean 'taskmanager.memory.process.size'?"), "{err}");
    assert!(
        err.contains("taskmanager.memory.task.heap.size plus taskmanager.memory.framework.heap.size"),
        "{err}"
    );
    assert!(err.contains("so taskmanager.memory.managed.fraction (0.5"), "{err}");
}

#[test]
fn bad_values_name_file_line_key_and_form() {
    let out = run(
        "taskmanager",
        Some("taskmanager:\n  memory:\n    process:\n      size: 17 bananas\n"),
        &["--print-memory"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("'17 bananas'") && err.contains("'taskmanager.memory.process.size'"),
        "{err}"
    );
    assert!(err.contains("config.yaml, line 4"), "{err}");
    assert!(err.contains("memory size"), "{err}");

    let out = run("jobmanager", None, &["--print-memory", "-D", "heartbeat.timeout=soon"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("'heartbeat.timeout'") && err.contains("-D flag"), "{err}");

    let out = run(
        "taskmanager",
        None,
        &["--print-memory", "--config-dir", "/nonexistent/conf"],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/conf/config.yaml"));
}

#[test]
fn flink_2_shipped_config_loads_with_warnings() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/testdata/flink-2-config.yaml");
    let yaml = std::fs::read_to_string(fixture).expect("fixture");
    for bin in ["jobmanager", "taskmanager"] {
        let out = run(bin, Some(&yaml), &["--print-memory"]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{bin}: {err}");
        assert!(
            err.contains("Unknown configuration key 'env.java.opts.all'"),
            "{bin}: {err}"
        );
    }
}

#[test]
fn environment_properties_sit_between_file_and_flags() {
    let mut cmd = Command::new(binary("taskmanager"));
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.yaml"), "taskmanager.memory.process.size: 1g\n").expect("write");
    let out = cmd
        .arg("--config-dir")
        .arg(dir.path())
        .args(["--print-memory", "--format", "json"])
        .env("SLUICE_PROPERTIES", "taskmanager.memory.process.size: 2g\n")
        .output()
        .expect("run");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["taskmanager.memory.process.size"], 2u64 << 30);
    let out = Command::new(binary("taskmanager"))
        .arg("--config-dir")
        .arg(dir.path())
        .args([
            "--print-memory",
            "--format",
            "json",
            "-D",
            "taskmanager.memory.process.size=3g",
        ])
        .env("SLUICE_PROPERTIES", "taskmanager.memory.process.size: 2g\n")
        .output()
        .expect("run");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["taskmanager.memory.process.size"], 3u64 << 30);
}
