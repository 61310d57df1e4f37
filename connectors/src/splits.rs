//! Split positions of the built-in sources: two little-endian `u64`s (the split's id and how
//! far it was read), and round-robin dealing of split ids over readers.

use sluice_common::failure::ClassedError;

use crate::contract::Split;

pub(crate) fn encode_position(a: u64, b: u64) -> Split {
    let mut v = a.to_le_bytes().to_vec();
    v.extend_from_slice(&b.to_le_bytes());
    v
}

pub(crate) fn decode_position(e: &[u8]) -> Result<(u64, u64), ClassedError> {
    if e.len() != 16 {
        return Err(ClassedError::internal(format!(
            "a source split position has {} bytes, expected 16",
            e.len()
        )));
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&e[..8]);
    b.copy_from_slice(&e[8..]);
    Ok((u64::from_le_bytes(a), u64::from_le_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_bad_lengths_are_named() {
        assert_eq!(decode_position(&encode_position(7, u64::MAX)).ok(), Some((7, u64::MAX)));
        let e = decode_position(&[1, 2, 3]).unwrap_err();
        assert!(e.message.contains("3 bytes"), "{e}");
    }
}
