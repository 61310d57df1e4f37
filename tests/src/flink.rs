//! Apache Flink 2.3 as PyPI's `apache-flink` installs it (scripts/deps.sh puts it in a venv,
//! `SLUICE_FLINK_VENV`, default `~/.cache/sluice-tools/flink-venv`): the `flink` CLI, and
//! small Java programs in `tests/java/` compiled against its jars to read Sluice's REST
//! answers with Flink's own classes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `pyflink/bin/flink` of the venv.
pub fn flink_bin() -> Option<PathBuf> {
    let venv = std::env::var("SLUICE_FLINK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sluice-tools/flink-venv")
        });
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", "import pyflink, os; print(os.path.dirname(pyflink.__file__))"])
        .output()
        .ok()?;
    let home = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bin = Path::new(&home).join("bin/flink");
    (out.status.success() && bin.exists()).then_some(bin)
}

/// Compiles `tests/java/<class>.java` against Flink's jars (`bin` is the `flink` CLI) into
/// `work`, runs it with `args`; asserts it succeeded and returns its standard output.
pub fn run_java_probe(bin: &Path, class: &str, args: &[&str], work: &Path) -> String {
    let home = bin.parent().and_then(Path::parent).expect("FLINK_HOME");
    let jars = format!("{}/lib/*", home.display());
    let classes = work.join(format!("{class}-classes"));
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .args(["-cp", &jars])
        .arg(crate::repo_root().join(format!("tests/java/{class}.java")))
        .output()
        .expect("run javac");
    assert!(javac.status.success(), "{}", String::from_utf8_lossy(&javac.stderr));
    let out = Command::new("java")
        .args(["-cp", &format!("{}:{jars}", classes.display())])
        .arg(class)
        .args(args)
        .output()
        .expect("run java");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!(
        "$ java {class} {}\n{text}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}
