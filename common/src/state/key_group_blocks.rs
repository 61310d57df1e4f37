//! The full keyed snapshot format, the same whichever backend wrote it (so a restore may use
//! the other backend, and a rescaled subtask reads only the key groups it owns): one block per
//! key group of the handle's range, in key-group order; `key_group_offsets[k]` is where the
//! block of key group `start + k` begins. A block: `u32` entry count, then per entry `u32` key
//! length, key, `u32` value length, value (little-endian). Keys are the backend-independent
//! logical keys (state id byte + the state's own key bytes), without the key-group prefix.

use super::KeyGroupRange;

pub struct BlocksWriter {
    range: KeyGroupRange,
    out: Vec<u8>,
    offsets: Vec<u64>,
    count_at: usize,
    count: u32,
}

impl BlocksWriter {
    pub fn new(range: KeyGroupRange) -> Self {
        BlocksWriter {
            range,
            out: Vec::new(),
            offsets: Vec::with_capacity(range.len()),
            count_at: 0,
            count: 0,
        }
    }

    fn close_block(&mut self) {
        if !self.offsets.is_empty() {
            self.out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        }
    }

    fn open_next(&mut self) {
        self.close_block();
        self.offsets.push(self.out.len() as u64);
        self.count_at = self.out.len();
        self.count = 0;
        self.out.extend_from_slice(&0u32.to_le_bytes());
    }

    /// Adds an entry of key group `kg`; key groups must come in ascending order.
    pub fn entry(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), String> {
        if !self.range.contains(kg) {
            return Err(format!(
                "key group {kg} is outside the snapshot's range {}..={}",
                self.range.start, self.range.end
            ));
        }
        let index = (kg - self.range.start) as usize;
        if index + 1 < self.offsets.len() {
            return Err(format!("key group {kg} written out of order"));
        }
        while self.offsets.len() <= index {
            self.open_next();
        }
        self.out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.out.extend_from_slice(value);
        self.count += 1;
        Ok(())
    }

    /// The file bytes and the offset of every key group's block.
    pub fn finish(mut self) -> (Vec<u8>, Vec<u64>) {
        while self.offsets.len() < self.range.len() {
            self.open_next();
        }
        self.close_block();
        (self.out, self.offsets)
    }
}

fn u32_at(data: &[u8], at: usize, what: &str) -> Result<u32, String> {
    data.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| format!("keyed state file is truncated ({what} at byte {at})"))
}

/// Calls `f(kg, key, value)` for every entry of the key groups of `want` that `data` (a file
/// covering `range` with `offsets`) holds.
pub fn read_blocks(
    data: &[u8],
    range: KeyGroupRange,
    offsets: &[u64],
    want: KeyGroupRange,
    mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    if offsets.len() != range.len() {
        return Err(format!(
            "keyed state handle has {} offsets for {} key groups",
            offsets.len(),
            range.len()
        ));
    }
    let Some(both) = range.intersect(&want) else {
        return Ok(());
    };
    for kg in both.iter() {
        let mut at = usize::try_from(offsets[(kg - range.start) as usize]).map_err(|e| e.to_string())?;
        let n = u32_at(data, at, "entry count")?;
        at += 4;
        for _ in 0..n {
            let kl = u32_at(data, at, "key length")? as usize;
            let key = data
                .get(at + 4..at + 4 + kl)
                .ok_or("keyed state file is truncated (key)")?;
            at += 4 + kl;
            let vl = u32_at(data, at, "value length")? as usize;
            let value = data
                .get(at + 4..at + 4 + vl)
                .ok_or("keyed state file is truncated (value)")?;
            at += 4 + vl;
            f(kg, key, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_slicing() {
        let range = KeyGroupRange::new(10, 15);
        let mut w = BlocksWriter::new(range);
        w.entry(11, b"a", b"1").unwrap();
        w.entry(11, b"b", b"2").unwrap();
        w.entry(14, b"c", b"").unwrap();
        assert!(w.entry(12, b"x", b"y").is_err(), "out of order");
        assert!(w.entry(20, b"x", b"y").is_err(), "outside the range");
        let (data, offsets) = w.finish();
        assert_eq!(offsets.len(), 6);
        let mut all = Vec::new();
        read_blocks(&data, range, &offsets, KeyGroupRange::new(0, 100), |kg, k, v| {
            all.push((kg, k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            all,
            vec![
                (11, b"a".to_vec(), b"1".to_vec()),
                (11, b"b".to_vec(), b"2".to_vec()),
                (14, b"c".to_vec(), vec![])
            ]
        );
        let mut some = Vec::new();
        read_blocks(&data, range, &offsets, KeyGroupRange::new(12, 20), |kg, _, _| {
            some.push(kg);
            Ok(())
        })
        .unwrap();
        assert_eq!(some, vec![14]);
        assert!(read_blocks(&data[..5], range, &offsets, range, |_, _, _| Ok(())).is_err());
    }
}
