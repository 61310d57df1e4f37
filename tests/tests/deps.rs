//! The fresh-machine helper `scripts/deps.sh` detects libclang the way RocksDB's bindgen
//! (clang-sys) does: tried against made-up directory trees, a tree holding only the C++
//! library `libclang-cpp.so.14` (what a fresh Debian machine has) reports libclang missing,
//! and each file name clang-sys accepts is found.

use std::path::Path;
use std::process::Command;

use sluice_tests::repo_root;

/// `scripts/deps.sh --check libclang` with every path prefixed by `root`.
fn libclang_under(root: &Path) -> String {
    let o = Command::new("bash")
        .arg(repo_root().join("scripts/deps.sh"))
        .args(["--check", "libclang"])
        .env("SLUICE_DEPS_ROOT", root)
        .env_remove("LIBCLANG_PATH")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run scripts/deps.sh");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn tree(files: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("dir");
    for f in files {
        let path = root.path().join(f);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"\x7fELF").expect("write");
    }
    root
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let root = tree(&[
        "usr/lib/llvm-14/lib/libclang-cpp.so.14",
        "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
        "usr/lib/llvm-14/lib/libLLVM-14.so",
    ]);
    assert_eq!(libclang_under(root.path()), "libclang missing");
}

#[test]
fn every_name_bindgen_accepts_is_found() {
    for name in [
        "usr/lib/llvm-14/lib/libclang.so",
        "usr/lib/llvm-14/lib/libclang-14.so",
        "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
        "usr/lib/x86_64-linux-gnu/libclang.so.1",
        "usr/local/lib/libclang.so",
    ] {
        let root = tree(&["usr/lib/llvm-14/lib/libclang-cpp.so.14", name]);
        assert_eq!(libclang_under(root.path()), "libclang present", "{name}");
    }
}

#[test]
fn libclang_path_is_searched_alone_when_set() {
    let root = tree(&["opt/llvm/lib/libclang.so", "usr/lib/libclang.so"]);
    let check = |dir: &str| {
        let o = Command::new("bash")
            .arg(repo_root().join("scripts/deps.sh"))
            .args(["--check", "libclang"])
            .env("SLUICE_DEPS_ROOT", root.path())
            .env("LIBCLANG_PATH", dir)
            .output()
            .expect("run scripts/deps.sh");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(check("/opt/llvm/lib"), "libclang present");
    // As clang-sys: with LIBCLANG_PATH set, nothing else is searched.
    assert_eq!(check("/opt/elsewhere"), "libclang missing");
}

#[test]
fn unknown_dependency_is_named() {
    let o = Command::new("bash")
        .arg(repo_root().join("scripts/deps.sh"))
        .args(["--check", "frobnicator"])
        .output()
        .expect("run scripts/deps.sh");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown dependency 'frobnicator'"), "{err}");
}
