//! The records one poll took from one split: their offsets, timestamps and keys, and their
//! values back to back in one buffer with a newline after each (the text formats' record
//! separator). A batch decodes from that buffer in place, so reading a record costs no
//! allocation and no copy beyond the one out of librdkafka's message.

/// One record's metadata and where its value lies in its `Polled` buffer.
pub(super) struct Record {
    pub(super) offset: i64,
    pub(super) timestamp: Option<i64>,
    pub(super) key: Option<Vec<u8>>,
    /// The value's bytes are `text[start..end]`, its newline `text[end]`.
    start: usize,
    end: usize,
    /// A null value (a tombstone): an empty line in the buffer.
    null: bool,
}

/// A record that did not decode, owned, for the dead-letter topic.
pub(super) struct DeadRecord {
    pub(super) offset: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
}

#[derive(Default)]
pub(super) struct Polled {
    pub(super) records: Vec<Record>,
    text: Vec<u8>,
}

impl Polled {
    pub(super) fn push(&mut self, offset: i64, timestamp: Option<i64>, key: Option<Vec<u8>>, value: Option<&[u8]>) {
        let start = self.text.len();
        self.text.extend_from_slice(value.unwrap_or_default());
        let end = self.text.len();
        self.text.push(b'\n');
        self.records.push(Record {
            offset,
            timestamp,
            key,
            start,
            end,
            null: value.is_none(),
        });
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(super) fn value(&self, r: &Record) -> Option<&[u8]> {
        (!r.null).then(|| &self.text[r.start..r.end])
    }

    /// Every value, each followed by a newline (a null value is an empty line).
    pub(super) fn text(&self) -> &[u8] {
        &self.text
    }

    /// Record `i`'s value with its newline, to decode it alone.
    pub(super) fn line(&self, i: usize) -> &[u8] {
        let r = &self.records[i];
        &self.text[r.start..=r.end]
    }

    /// Whether record `i`'s value holds a newline (it would split into two lines of text).
    pub(super) fn spans_lines(&self, i: usize) -> bool {
        let r = &self.records[i];
        self.text[r.start..r.end].contains(&b'\n')
    }

    /// Moves record `i` to `into`.
    pub(super) fn move_to(&mut self, i: usize, into: &mut Polled) {
        let key = self.records[i].key.take();
        let r = &self.records[i];
        into.push(r.offset, r.timestamp, key, self.value(r));
    }

    /// Record `i`, owned.
    pub(super) fn take_dead(&mut self, i: usize) -> DeadRecord {
        let key = self.records[i].key.take();
        let r = &self.records[i];
        DeadRecord {
            offset: r.offset,
            key,
            value: self.value(r).map(<[u8]>::to_vec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lie_back_to_back_one_line_each() {
        let mut p = Polled::default();
        p.push(5, Some(1), Some(b"k".to_vec()), Some(b"{\"a\":1}"));
        p.push(6, None, None, None);
        p.push(7, Some(3), None, Some(b"x\ny"));
        assert_eq!(p.text(), b"{\"a\":1}\n\nx\ny\n");
        assert_eq!((p.len(), p.is_empty()), (3, false));
        assert_eq!(p.value(&p.records[0]), Some(&b"{\"a\":1}"[..]));
        assert_eq!(p.value(&p.records[1]), None, "a null value stays null");
        assert_eq!(p.line(1), b"\n");
        assert_eq!(p.line(2), b"x\ny\n");
        assert_eq!((p.spans_lines(0), p.spans_lines(2)), (false, true));

        let mut kept = Polled::default();
        p.move_to(0, &mut kept);
        assert_eq!(kept.text(), b"{\"a\":1}\n");
        assert_eq!(
            (kept.records[0].offset, kept.records[0].key.as_deref()),
            (5, Some(&b"k"[..]))
        );
        assert!(!kept.spans_lines(0));
        let dead = p.take_dead(2);
        assert_eq!((dead.offset, dead.key, dead.value), (7, None, Some(b"x\ny".to_vec())));
    }
}
