//! The checkpoint directory layout of DESIGN §8 (Flink's): under `<dir>/<job-id>/`,
//! `chk-<N>/_metadata` (the only thing that makes checkpoint N exist) and the files owned by
//! that checkpoint, `shared/` for files several checkpoints reference, `taskowned/`.

use object_store::path::Path;

#[derive(Clone, Debug)]
pub struct CheckpointLayout {
    root: Path,
}

/// `name` inside the directory URL `base`.
pub fn url_join(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// A storage URL from what a user typed: URLs stay, a bare path becomes `file://path`.
pub fn location_url(path_or_url: &str) -> String {
    if path_or_url.contains("://") {
        path_or_url.to_string()
    } else {
        format!("file://{path_or_url}")
    }
}

/// The URL of a job's checkpoint directory under `execution.checkpointing.dir`.
pub fn job_url(checkpoints_dir: &str, job_id: &str) -> String {
    url_join(checkpoints_dir, job_id)
}

/// The URL of checkpoint `id`'s directory (`<dir>/<job-id>/chk-<id>`).
pub fn checkpoint_url(checkpoints_dir: &str, job_id: &str, id: u64) -> String {
    url_join(&job_url(checkpoints_dir, job_id), &format!("chk-{id}"))
}

/// The parent of a directory URL (`…/job/chk-3` → `…/job`).
pub fn parent_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) if !trimmed[..i].ends_with('/') => trimmed[..i].to_string(),
        _ => trimmed.to_string(),
    }
}

/// `chk-12` → 12.
pub fn checkpoint_id_of(dir_name: &str) -> Option<u64> {
    dir_name.strip_prefix("chk-")?.parse().ok()
}

impl CheckpointLayout {
    pub fn new(prefix: &Path, job_id: &str) -> Self {
        CheckpointLayout {
            root: prefix.clone().join(job_id),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn checkpoint_dir(&self, id: u64) -> Path {
        self.root.clone().join(format!("chk-{id}").as_str())
    }

    pub fn metadata(&self, id: u64) -> Path {
        self.checkpoint_dir(id).join("_metadata")
    }

    /// A file owned by checkpoint `id`.
    pub fn file(&self, id: u64, name: &str) -> Path {
        self.checkpoint_dir(id).join(name)
    }

    pub fn shared(&self, name: &str) -> Path {
        self.root.clone().join("shared").join(name)
    }

    pub fn task_owned(&self, name: &str) -> Path {
        self.root.clone().join("taskowned").join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let l = CheckpointLayout::new(&Path::from("ckpts"), "abc");
        assert_eq!(l.metadata(7).as_ref(), "ckpts/abc/chk-7/_metadata");
        assert_eq!(l.shared("0001.sst").as_ref(), "ckpts/abc/shared/0001.sst");
        assert_eq!(l.task_owned("x").as_ref(), "ckpts/abc/taskowned/x");
        assert_eq!(checkpoint_id_of("chk-12"), Some(12));
        assert_eq!(checkpoint_id_of("shared"), None);
    }

    #[test]
    fn urls() {
        assert_eq!(checkpoint_url("s3://b/ck/", "job", 3), "s3://b/ck/job/chk-3");
        assert_eq!(location_url("/tmp/sp"), "file:///tmp/sp");
        assert_eq!(location_url("s3://b/sp"), "s3://b/sp");
        assert_eq!(parent_url("s3://b/ck/job/chk-3"), "s3://b/ck/job");
        assert_eq!(parent_url("file:///tmp/ck/job/chk-3/"), "file:///tmp/ck/job");
    }
}
