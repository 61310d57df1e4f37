//! Split positions of the built-in sources (two little-endian `u64`s: the split's id and how
//! far it was read), and the framing enumerator states use: a version byte, then counts and
//! length-prefixed byte strings (little-endian `u32`s).

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

/// Writes a framed state.
pub(crate) struct FrameWriter(Vec<u8>);

impl FrameWriter {
    pub(crate) fn new(version: u8) -> Self {
        FrameWriter(vec![version])
    }

    pub(crate) fn count(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u32).to_le_bytes());
    }

    pub(crate) fn frame(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a framed state; every error names `what`.
pub(crate) struct FrameReader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> FrameReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], version: u8, what: &'static str) -> Result<Self, ClassedError> {
        match bytes.split_first() {
            Some((v, rest)) if *v == version => Ok(FrameReader { rest, what }),
            Some((v, _)) => Err(ClassedError::internal(format!(
                "{what} has version {v}, this build reads version {version}"
            ))),
            None => Err(ClassedError::internal(format!("{what} is empty"))),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ClassedError> {
        if self.rest.len() < n {
            return Err(ClassedError::internal(format!(
                "{} ends early: {n} bytes wanted, {} left",
                self.what,
                self.rest.len()
            )));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn count(&mut self) -> Result<usize, ClassedError> {
        let mut n = [0u8; 4];
        n.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(n) as usize)
    }

    pub(crate) fn frame(&mut self) -> Result<&'a [u8], ClassedError> {
        let n = self.count()?;
        self.take(n)
    }

    pub(crate) fn text(&mut self) -> Result<String, ClassedError> {
        let what = self.what;
        String::from_utf8(self.frame()?.to_vec())
            .map_err(|e| ClassedError::internal(format!("{what} holds an id that is not UTF-8: {e}")))
    }

    pub(crate) fn done(&self) -> Result<(), ClassedError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(ClassedError::internal(format!("{} has {n} bytes too many", self.what))),
        }
    }
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
