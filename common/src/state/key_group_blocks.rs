//! The full keyed snapshot format, the same whichever backend wrote it (so a restore may use
//! the other backend, and a rescaled subtask reads only the key groups it owns): one block per
//! key group of the handle's range, in key-group order; `key_group_offsets[k]` is where the
//! block of key group `start + k` begins. A block: `u32` entry count, then per entry `u32` key
//! length, key, `u32` value length, value (little-endian). Keys are the backend-independent
//! logical keys (state id byte + the state's own key bytes), without the key-group prefix.
//!
//! With `execution.checkpointing.snapshot-compression` each block is one zstd frame
//! (`compress_blocks`) and the offsets say where the frames begin. Either way a restore reads
//! only the bytes of its own key groups (`byte_range`).

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

/// `StateHandle.compression` of a file whose blocks are zstd frames.
pub const ZSTD: &str = "zstd";

/// The zstd level of compressed blocks: the fastest regular one, as a snapshot's upload (often
/// in a rescale's pause) waits for it.
const ZSTD_LEVEL: i32 = 1;

/// Where each block of a file of `size` bytes with `offsets` begins and ends.
fn blocks(offsets: &[u64], size: u64) -> Result<Vec<std::ops::Range<usize>>, String> {
    let ends = offsets.iter().skip(1).copied().chain(std::iter::once(size));
    offsets
        .iter()
        .zip(ends)
        .map(|(&from, to)| {
            if from > to || to > size {
                return Err(format!(
                    "keyed state file of {size} bytes has a key-group block at bytes {from}..{to}"
                ));
            }
            Ok(usize::try_from(from).map_err(|e| e.to_string())?..usize::try_from(to).map_err(|e| e.to_string())?)
        })
        .collect()
}

/// Compresses each block of `data` (cut by `offsets`) into its own zstd frame: the compressed
/// file and where each frame begins.
pub fn compress_blocks(data: &[u8], offsets: &[u64]) -> Result<(Vec<u8>, Vec<u64>), String> {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut at = Vec::with_capacity(offsets.len());
    for block in blocks(offsets, data.len() as u64)? {
        at.push(out.len() as u64);
        zstd::stream::copy_encode(&data[block], &mut out, ZSTD_LEVEL)
            .map_err(|e| format!("compressing a keyed state block: {e}"))?;
    }
    Ok((out, at))
}

/// The plain blocks of `data`, whose blocks (cut by `offsets`) are zstd frames: the plain
/// bytes and where each block begins.
pub fn decompress_blocks(data: &[u8], offsets: &[u64]) -> Result<(Vec<u8>, Vec<u64>), String> {
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut at = Vec::with_capacity(offsets.len());
    for (i, block) in blocks(offsets, data.len() as u64)?.into_iter().enumerate() {
        at.push(out.len() as u64);
        zstd::stream::copy_decode(&data[block], &mut out)
            .map_err(|e| format!("keyed state block {i} is not a valid zstd frame: {e}"))?;
    }
    Ok((out, at))
}

/// The key groups of `want` that a file covering `range` with `offsets` holds, once its
/// offsets are checked to match its range.
fn wanted(range: KeyGroupRange, offsets: &[u64], want: KeyGroupRange) -> Result<Option<KeyGroupRange>, String> {
    if offsets.len() != range.len() {
        return Err(format!(
            "keyed state handle has {} offsets for {} key groups",
            offsets.len(),
            range.len()
        ));
    }
    Ok(range.intersect(&want))
}

/// The part of a file (covering `range` with `offsets`, `size` bytes long) that holds the key
/// groups of `want`: those key groups, the byte range to read, and their offsets within it.
/// `None` when the file holds none of them.
#[allow(clippy::type_complexity)]
pub fn byte_range(
    range: KeyGroupRange,
    offsets: &[u64],
    size: u64,
    want: KeyGroupRange,
) -> Result<Option<(KeyGroupRange, std::ops::Range<u64>, Vec<u64>)>, String> {
    let Some(both) = wanted(range, offsets, want)? else {
        return Ok(None);
    };
    let (first, last) = ((both.start - range.start) as usize, (both.end - range.start) as usize);
    let part = &blocks(offsets, size)?[first..=last];
    let (from, to) = (part[0].start as u64, part[part.len() - 1].end as u64);
    let rebased = part.iter().map(|b| b.start as u64 - from).collect();
    Ok(Some((both, from..to, rebased)))
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
    let Some(both) = wanted(range, offsets, want)? else {
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

    fn entries(data: &[u8], range: KeyGroupRange, offsets: &[u64]) -> Vec<(u32, Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        read_blocks(data, range, offsets, range, |kg, k, v| {
            all.push((kg, k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        all
    }

    #[test]
    fn compressed_blocks_read_back_whole_and_by_key_groups() {
        let range = KeyGroupRange::new(0, 9);
        let mut w = BlocksWriter::new(range);
        for kg in [1, 4, 5, 9] {
            for i in 0..100u32 {
                w.entry(kg, &i.to_be_bytes(), format!("0.{kg}{i:08}").as_bytes())
                    .unwrap();
            }
        }
        let (data, offsets) = w.finish();
        let (packed, frames) = compress_blocks(&data, &offsets).unwrap();
        assert!(packed.len() < data.len() / 2, "{} of {}", packed.len(), data.len());
        let (plain, at) = decompress_blocks(&packed, &frames).unwrap();
        assert_eq!((&plain, &at), (&data, &offsets));
        // Key groups 4-6 of the compressed file: only their frames are read.
        let (kgs, bytes, rebased) = byte_range(range, &frames, packed.len() as u64, KeyGroupRange::new(4, 6))
            .unwrap()
            .unwrap();
        assert_eq!(kgs, KeyGroupRange::new(4, 6));
        assert_eq!(bytes, frames[4]..frames[7]);
        let part = &packed[bytes.start as usize..bytes.end as usize];
        let (plain, at) = decompress_blocks(part, &rebased).unwrap();
        let want: Vec<_> = entries(&data, range, &offsets)
            .into_iter()
            .filter(|e| (4..=6).contains(&e.0))
            .collect();
        assert_eq!(entries(&plain, kgs, &at), want);
        // The last key group reads to the end of the file; none of them, nothing.
        let (_, bytes, _) = byte_range(range, &offsets, data.len() as u64, KeyGroupRange::new(9, 20))
            .unwrap()
            .unwrap();
        assert_eq!(bytes, offsets[9]..data.len() as u64);
        assert!(
            byte_range(range, &offsets, data.len() as u64, KeyGroupRange::new(20, 30))
                .unwrap()
                .is_none()
        );
        // Damage is an error, not a panic.
        assert!(decompress_blocks(&packed[..packed.len() - 3], &frames).is_err());
        assert!(byte_range(range, &offsets, 10, range).is_err());
    }
}
