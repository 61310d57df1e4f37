//! Commits a Kafka transaction that a crashed attempt precommitted, by the wire protocol:
//! `FindCoordinator` (key type transaction) on a bootstrap server, then `EndTxn(commit)` with the
//! saved transactional id, producer id and epoch on the coordinator. This is what Flink's
//! `resumeTransaction` + `commitTransaction` amount to; librdkafka cannot resume a transaction
//! under a saved producer id and epoch, so Sluice speaks these two requests itself. Blocking
//! (std sockets with timeouts): call it off the async workers. Committing twice is harmless:
//! the coordinator answers a repeated commit of a completed transaction with success.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const FIND_COORDINATOR: i16 = 10;
const END_TXN: i16 = 26;
const TIMEOUT: Duration = Duration::from_secs(10);
const CLIENT_ID: &str = "sluice-txn-committer";

/// The producer identity a transaction was opened under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnHandle {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

fn put_string(buf: &mut Vec<u8>, s: &str) -> Result<(), String> {
    let len = i16::try_from(s.len()).map_err(|_| format!("'{s}' is too long for the Kafka protocol"))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A request frame: size, then header v1 (api key, version, correlation id, client id), body.
fn frame(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut msg = Vec::with_capacity(body.len() + 32);
    msg.extend_from_slice(&api_key.to_be_bytes());
    msg.extend_from_slice(&version.to_be_bytes());
    msg.extend_from_slice(&correlation.to_be_bytes());
    put_string(&mut msg, CLIENT_ID)?;
    msg.extend_from_slice(body);
    let mut out = (msg.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&msg);
    Ok(out)
}

/// Reads a response's body (after its correlation id), checking the id.
fn exchange(stream: &mut TcpStream, request: &[u8], correlation: i32) -> Result<Vec<u8>, String> {
    stream.write_all(request).map_err(|e| e.to_string())?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(|e| e.to_string())?;
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(|_| "a negative response size".to_string())?;
    if !(4..=1 << 20).contains(&size) {
        return Err(format!("a response of {size} bytes"));
    }
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    let got = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if got != correlation {
        return Err(format!("response {got} to request {correlation}"));
    }
    Ok(body.split_off(4))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.buf.len() < n {
            return Err("a truncated response".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<Option<String>, String> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let b = self.take(len as usize)?;
        Ok(Some(String::from_utf8_lossy(b).into_owned()))
    }
}

fn connect(address: &str) -> Result<TcpStream, String> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to nothing"))?;
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connecting to {address}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(s)
}

/// The transaction coordinator of `transactional_id`, as host:port.
fn find_coordinator(bootstrap: &str, transactional_id: &str) -> Result<String, String> {
    let mut last = String::from("no bootstrap server");
    for server in bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let attempt = (|| {
            let mut s = connect(server)?;
            let mut body = Vec::new();
            put_string(&mut body, transactional_id)?;
            body.push(1); // key type: transaction
            let resp = exchange(&mut s, &frame(FIND_COORDINATOR, 1, 1, &body)?, 1)?;
            let mut r = Reader { buf: &resp };
            let _throttle = r.i32()?;
            let error = r.i16()?;
            let message = r.string()?;
            if error != 0 {
                return Err(format!(
                    "FindCoordinator answered error {error} {}",
                    message.unwrap_or_default()
                ));
            }
            let _node = r.i32()?;
            let host = r.string()?.unwrap_or_default();
            let port = r.i32()?;
            Ok(format!("{host}:{port}"))
        })();
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) => last = format!("{server}: {e}"),
        }
    }
    Err(last)
}

/// One recovery commit at a time per process: they are rare, and brokers that persist their
/// transaction state by rewriting it are spared concurrent ends.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Commits the transaction `txn` holds. Errors name the transaction and the broker's answer.
pub(crate) fn commit(bootstrap: &str, txn: &TxnHandle) -> Result<(), String> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let what = format!(
        "committing Kafka transaction {} (producer id {}, epoch {})",
        txn.transactional_id, txn.producer_id, txn.producer_epoch
    );
    let coordinator = find_coordinator(bootstrap, &txn.transactional_id).map_err(|e| format!("{what}: {e}"))?;
    let mut s = connect(&coordinator).map_err(|e| format!("{what}: {e}"))?;
    let mut body = Vec::new();
    put_string(&mut body, &txn.transactional_id)?;
    body.extend_from_slice(&txn.producer_id.to_be_bytes());
    body.extend_from_slice(&txn.producer_epoch.to_be_bytes());
    body.push(1); // committed
    let resp = exchange(&mut s, &frame(END_TXN, 1, 2, &body)?, 2).map_err(|e| format!("{what}: {e}"))?;
    let mut r = Reader { buf: &resp };
    let _throttle = r.i32().map_err(|e| format!("{what}: {e}"))?;
    match r.i16().map_err(|e| format!("{what}: {e}"))? {
        0 => Ok(()),
        code => Err(format!("{what}: EndTxn answered error {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed_as_the_protocol_says() {
        let f = frame(END_TXN, 1, 7, &[0xAB]).unwrap();
        let size = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(size, f.len() - 4);
        assert_eq!(&f[4..8], &[0, 26, 0, 1]);
        assert_eq!(&f[8..12], &7i32.to_be_bytes());
        assert_eq!(&f[12..14], &(CLIENT_ID.len() as i16).to_be_bytes());
        assert_eq!(*f.last().unwrap(), 0xAB);
    }

    #[test]
    fn truncated_answers_are_errors() {
        let mut r = Reader { buf: &[0, 1] };
        assert!(r.i32().is_err());
    }
}
