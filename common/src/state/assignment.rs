//! Which part of a snapshot a subtask of the restored job gets (Flink's
//! `StateAssignmentOperation`): keyed handles whose key-group range intersects the subtask's
//! range, and operator lists redistributed by even split (contiguous chunks in old-subtask
//! order, the first `T mod p` subtasks one more), union (everything to everyone) or broadcast
//! (subtask i gets old subtask i mod p_old's copy).

use crate::proto::checkpoint::{CheckpointMetadata, RedistributionMode, StateHandle};

use super::KeyGroupRange;

/// One operator's restored state for one subtask.
#[derive(Debug, Clone, Default)]
pub struct OperatorRestore {
    /// Handles overlapping the subtask's key groups (the reader keeps only its own).
    pub keyed: Vec<StateHandle>,
    /// Operator list states by name.
    pub lists: Vec<(String, Vec<Vec<u8>>)>,
    /// The subtask's own key groups (what it keeps of `keyed`).
    pub range: Option<KeyGroupRange>,
}

impl OperatorRestore {
    pub fn list(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.lists.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// The state of operator `uid` for subtask `subtask` of `parallelism`; `None` when the snapshot
/// has no state for that operator.
pub fn assign(metadata: &CheckpointMetadata, uid: &str, parallelism: u32, subtask: u32) -> Option<OperatorRestore> {
    let op = metadata.operators.iter().find(|o| o.uid == uid)?;
    let mine = KeyGroupRange::of_subtask(metadata.max_parallelism, parallelism, subtask);
    let mut subtasks: Vec<_> = op.subtasks.iter().collect();
    subtasks.sort_by_key(|s| s.subtask);
    let keyed = subtasks
        .iter()
        .flat_map(|s| s.keyed.iter())
        .filter(|h| {
            KeyGroupRange::new(h.key_group_start, h.key_group_end)
                .intersect(&mine)
                .is_some()
        })
        .cloned()
        .collect();
    let mut names: Vec<(String, RedistributionMode)> = Vec::new();
    for s in &subtasks {
        for l in &s.lists {
            if !names.iter().any(|(n, _)| *n == l.name) {
                names.push((l.name.clone(), l.mode()));
            }
        }
    }
    let lists = names
        .into_iter()
        .map(|(name, mode)| {
            let all: Vec<Vec<u8>> = subtasks
                .iter()
                .flat_map(|s| s.lists.iter().filter(|l| l.name == name))
                .flat_map(|l| l.elements.iter().cloned())
                .collect();
            let elements = match mode {
                RedistributionMode::Union => all,
                RedistributionMode::Broadcast => {
                    let holders: Vec<_> = subtasks
                        .iter()
                        .filter(|s| s.lists.iter().any(|l| l.name == name))
                        .collect();
                    holders
                        .get(subtask as usize % holders.len().max(1))
                        .map(|s| {
                            s.lists
                                .iter()
                                .filter(|l| l.name == name)
                                .flat_map(|l| l.elements.iter().cloned())
                                .collect()
                        })
                        .unwrap_or_default()
                }
                RedistributionMode::SplitDistribute => {
                    let (p, i, t) = (parallelism as usize, subtask as usize, all.len());
                    let (base, extra) = (t / p, t % p);
                    let start = i * base + i.min(extra);
                    let len = base + usize::from(i < extra);
                    all[start.min(t)..(start + len).min(t)].to_vec()
                }
            };
            (name, elements)
        })
        .collect();
    Some(OperatorRestore {
        keyed,
        lists,
        range: Some(mine),
    })
}

/// Flink's check before restoring: the new parallelism must not exceed the stored max.
pub fn check_max_parallelism(metadata: &CheckpointMetadata, task: &str, parallelism: u32) -> Result<(), String> {
    if parallelism > metadata.max_parallelism {
        return Err(format!(
            "The state for task {task} can not be restored. The maximum parallelism ({}) of the restored state is lower than the configured parallelism ({parallelism}). Please reduce the parallelism of the task to be lower or equal to the maximum parallelism.",
            metadata.max_parallelism
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::checkpoint::{OperatorListState, OperatorState, SubtaskState};

    fn meta() -> CheckpointMetadata {
        let sub = |i: u32, range: (u32, u32), elems: &[&str]| SubtaskState {
            subtask: i,
            keyed: vec![StateHandle {
                path: format!("k{i}"),
                key_group_start: range.0,
                key_group_end: range.1,
                ..Default::default()
            }],
            lists: vec![
                OperatorListState {
                    name: "splits".into(),
                    mode: RedistributionMode::SplitDistribute as i32,
                    elements: elems.iter().map(|e| e.as_bytes().to_vec()).collect(),
                },
                OperatorListState {
                    name: "wm".into(),
                    mode: RedistributionMode::Union as i32,
                    elements: vec![format!("w{i}").into_bytes()],
                },
                OperatorListState {
                    name: "rules".into(),
                    mode: RedistributionMode::Broadcast as i32,
                    elements: vec![format!("copy{i}").into_bytes()],
                },
            ],
            ..Default::default()
        };
        CheckpointMetadata {
            max_parallelism: 128,
            operators: vec![OperatorState {
                uid: "op".into(),
                parallelism: 2,
                subtasks: vec![sub(1, (64, 127), &["c", "d", "e"]), sub(0, (0, 63), &["a", "b"])],
            }],
            ..Default::default()
        }
    }

    fn strings(v: Option<&[Vec<u8>]>) -> Vec<String> {
        v.unwrap_or_default()
            .iter()
            .map(|e| String::from_utf8(e.clone()).unwrap())
            .collect()
    }

    #[test]
    fn scale_up_to_three() {
        let m = meta();
        let parts: Vec<OperatorRestore> = (0..3).map(|i| assign(&m, "op", 3, i).unwrap()).collect();
        // [0,42] ← k0; [43,85] ← k0 and k1; [86,127] ← k1.
        let paths = |r: &OperatorRestore| r.keyed.iter().map(|h| h.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&parts[0]), vec!["k0"]);
        assert_eq!(paths(&parts[1]), vec!["k0", "k1"]);
        assert_eq!(paths(&parts[2]), vec!["k1"]);
        assert_eq!(strings(parts[0].list("splits")), vec!["a", "b"]);
        assert_eq!(strings(parts[1].list("splits")), vec!["c", "d"]);
        assert_eq!(strings(parts[2].list("splits")), vec!["e"]);
        for p in &parts {
            assert_eq!(strings(p.list("wm")), vec!["w0", "w1"]);
        }
        // Broadcast state: subtask i gets old subtask i mod 2's copy.
        let copies: Vec<_> = parts.iter().map(|p| strings(p.list("rules"))).collect();
        assert_eq!(copies, vec![vec!["copy0"], vec!["copy1"], vec!["copy0"]]);
        assert!(assign(&m, "other", 3, 0).is_none());
    }

    #[test]
    fn scale_down_to_one() {
        let r = assign(&meta(), "op", 1, 0).unwrap();
        assert_eq!(r.keyed.len(), 2);
        assert_eq!(strings(r.list("splits")), vec!["a", "b", "c", "d", "e"]);
        assert_eq!(strings(r.list("rules")), vec!["copy0"]);
    }

    #[test]
    fn max_parallelism_message() {
        let e = check_max_parallelism(&meta(), "per-user", 200).unwrap_err();
        assert!(e.starts_with("The state for task per-user can not be restored. The maximum parallelism (128) of the restored state is lower than the configured parallelism (200)."), "{e}");
        assert!(check_max_parallelism(&meta(), "x", 128).is_ok());
    }
}
