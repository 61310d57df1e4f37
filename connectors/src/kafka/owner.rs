//! Which source reader owns a topic-partition: Flink's `KafkaSourceEnumerator.getSplitOwner`,
//! with Java's `String.hashCode` and 32-bit wrapping arithmetic, so a Flink user finds each
//! partition on the subtask Flink would put it on.

/// Java's `String.hashCode`: `h = 31 * h + c` over UTF-16 code units, wrapping at 32 bits.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// `startIndex = ((topic.hashCode() * 31) & 0x7FFFFFFF) % readers; (startIndex + partition) % readers`.
pub(crate) fn split_owner(topic: &str, partition: i32, readers: u32) -> usize {
    let n = i64::from(readers.max(1));
    let start = i64::from(java_hash(topic).wrapping_mul(31) & 0x7FFF_FFFF) % n;
    ((start + i64::from(partition)) % n) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_string_hashes() {
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash("Hello World"), -862_545_276);
        assert_eq!(java_hash("orders"), -1_008_770_331);
    }

    /// The vectors of the reference (connectors.md §1.2).
    #[test]
    fn owners_match_flinks_formula() {
        let owners = |topic: &str, n: u32| (0..8).map(|p| split_owner(topic, p, n)).collect::<Vec<_>>();
        assert_eq!(owners("orders", 4), [3, 0, 1, 2, 3, 0, 1, 2]);
        assert_eq!(owners("orders", 3), [0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(owners("input-topic", 4), [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(owners("nexmark-bid", 4), [2, 3, 0, 1, 2, 3, 0, 1]);
    }
}
