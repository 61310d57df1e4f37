//! "Did you mean …?" for a misspelt name (a configuration key, a job-file field): the closest
//! known name by edit distance, when it is close enough to be a typo.

/// Levenshtein distance between `a` and `b` (by characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The known name closest to `word`, if within a typo's distance (a third of its length, at
/// most 3 edits); ties go to the first candidate.
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    known
        .into_iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, _)| *d > 0 && *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` Did you mean 'x'?` or nothing, to append to a message.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, known)
        .map(|k| format!(" Did you mean '{k}'?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_name() {
        let keys = [
            "taskmanager.memory.process.size",
            "taskmanager.memory.flink.size",
            "rest.port",
        ];
        assert_eq!(closest("taskmanager.memory.proces.size", keys), Some(keys[0]));
        assert_eq!(closest("rest.prot", keys), Some("rest.port"));
        assert_eq!(closest("completely.different", keys), None);
        assert_eq!(closest("inputs", ["input", "id", "filter"]), Some("input"));
        assert_eq!(did_you_mean("filtr", ["filter"]), " Did you mean 'filter'?");
        assert_eq!(did_you_mean("zzz", ["filter"]), "");
    }
}
