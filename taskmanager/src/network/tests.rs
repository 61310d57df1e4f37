//! Two network environments (two "taskmanagers") on loopback: data arrives complete and in
//! order over a remote and a local channel, a slow consumer back-pressures the producer, and
//! the consumer never holds more buffers than its credit allows; a producer queues ahead of
//! credit up to its limit and hears when its channel closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use tokio::net::TcpListener;

use super::credit::SenderCredit;
use super::*;
use crate::runtime::time_account::TimeAccount;

async fn environment() -> Arc<NetworkEnvironment> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let env = NetworkEnvironment::new(NetworkBufferPool::new(1000, 1024), address, 2, 3, 10);
    env.serve(listener);
    env
}

fn batch(start: i64, n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(start..start + n))]).unwrap()
}

async fn run(remote: bool) {
    let producer_env = environment().await;
    let consumer_env = if remote {
        environment().await
    } else {
        producer_env.clone()
    };
    let key = GateKey {
        epoch: 1,
        vertex: 1,
        subtask: 0,
    };
    let mut gate = InputGate::new(key, &[(0, 0, vec![0])], 2, 3);
    let shared = gate.shared();
    consumer_env.gates.register(shared.clone(), &[0]);
    let id = ChannelId {
        epoch: 1,
        edge: 0,
        from: 0,
        to: 0,
    };
    let channel = producer_env
        .open_channel(
            id,
            &consumer_env.local_address,
            Arc::new(tokio::sync::Semaphore::new(2)),
        )
        .await
        .unwrap();
    // 1 KiB segments: each 1000-row batch (8 KB) becomes about 8 buffers.
    let mut writer = RecordWriter::new(WriterPartition::Forward, vec![channel], 1024, 0);
    let producer = tokio::spawn(async move {
        let time = TimeAccount::default();
        for i in 0..50 {
            writer.emit(&batch(i * 1000, 1000), &time).await.unwrap();
        }
        writer
            .broadcast_event(StreamEvent::EndOfPartition, &time)
            .await
            .unwrap();
        time.totals_at(Instant::now()).back_pressured
    });
    let mut next = 0i64;
    let mut max_in_use = 0;
    loop {
        let (_, event) = tokio::time::timeout(Duration::from_secs(10), gate.next())
            .await
            .unwrap()
            .unwrap();
        max_in_use = max_in_use.max(shared.buffers_in_use());
        match event {
            StreamEvent::Batch(b) => {
                for v in b.column(0).as_primitive::<Int64Type>().values() {
                    assert_eq!(*v, next);
                    next += 1;
                }
                // A slow consumer.
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
            StreamEvent::EndOfPartition => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next, 50_000);
    let blocked = producer.await.unwrap();
    assert!(blocked > Duration::ZERO, "the producer was never back-pressured");
    assert!(
        max_in_use <= 2 + 3,
        "consumer held {max_in_use} buffers, credit allows 5"
    );
}

#[tokio::test]
async fn remote_channel_is_ordered_bounded_and_backpressured() {
    run(true).await;
}

#[tokio::test]
async fn local_channel_keeps_the_same_credit_rules() {
    run(false).await;
}

async fn fill(channel: &mut OutputChannel, time: &TimeAccount, values: std::ops::Range<i64>) {
    for i in values {
        channel.send(StreamEvent::Batch(batch(i, 1)), time).await.unwrap();
    }
}

/// A producer whose consumer does not read sends its credit's worth, then queues up to its
/// queue limit without waiting, then is back-pressured; the queue drains in order as the
/// consumer reads; when the channel closes (its connection broke), the producer's next send
/// fails with the reason instead of hanging.
#[tokio::test]
async fn producer_queues_ahead_of_credit_in_order_and_fails_when_the_channel_closes() {
    let key = GateKey {
        epoch: 2,
        vertex: 1,
        subtask: 0,
    };
    // 2 exclusive buffers, no floating ones: credit for 2 buffers at a time.
    let mut gate = InputGate::new(key, &[(0, 0, vec![0])], 2, 0);
    let credit = Arc::new(SenderCredit::default());
    gate.shared()
        .attach(0, Arc::new(LocalCreditSink(credit.clone())))
        .unwrap();
    let id = ChannelId {
        epoch: 2,
        edge: 0,
        from: 0,
        to: 0,
    };
    let limit = 3;
    // The channel's own limit binds here: its partition has plenty of buffers.
    let partition = Arc::new(tokio::sync::Semaphore::new(100));
    let target = output_queue::Target::Local(gate.shared(), 0);
    let mut channel = OutputChannel::new(id, credit.clone(), target, limit, partition.clone());
    let time = TimeAccount::default();
    fill(&mut channel, &time, 0..(2 + limit) as i64).await;
    assert_eq!(
        time.totals_at(Instant::now()).back_pressured,
        Duration::ZERO,
        "credit plus queue room took every buffer at once"
    );
    let full = tokio::time::timeout(
        Duration::from_millis(200),
        channel.send(StreamEvent::Batch(batch(99, 1)), &time),
    )
    .await;
    assert!(full.is_err(), "a full queue back-pressures the producer");
    // The whole wait counted as back-pressured, and the abandoned wait left the phase.
    let waited = time.totals_at(Instant::now()).back_pressured;
    assert!(waited >= Duration::from_millis(190), "back-pressured {waited:?}");
    let later = time.totals_at(Instant::now() + Duration::from_secs(1));
    assert_eq!(later.back_pressured, waited, "still counting after the wait ended");
    for want in 0..(2 + limit) as i64 {
        let (_, event) = tokio::time::timeout(Duration::from_secs(5), gate.next())
            .await
            .unwrap()
            .unwrap();
        let StreamEvent::Batch(b) = event else {
            panic!("expected a batch, got {event:?}");
        };
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), want);
    }
    // The connection broke: the pump, waiting for credit, stops, and the producer hears why.
    fill(&mut channel, &time, 10..10 + limit as i64).await;
    credit.close();
    let err = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(e) = channel.send(StreamEvent::Batch(batch(100, 1)), &time).await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert!(err.contains("closed while waiting for credit"), "{err}");
    assert_eq!(
        partition.available_permits(),
        100,
        "a stopped channel gives its partition buffers back"
    );
}

#[tokio::test]
async fn a_frame_for_a_channel_no_task_opened_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = environment().await;
    for (kind, len) in [(frame::DATA, 256usize << 20), (frame::OPEN, 200 << 20)] {
        let mut peer = tokio::net::TcpStream::connect(&env.local_address).await.unwrap();
        let id = ChannelId {
            epoch: 9,
            edge: 0,
            from: 0,
            to: 0,
        };
        let mut head = frame::encode(kind, id, &[]).head;
        head[..4].copy_from_slice(&(len as u32).to_le_bytes());
        peer.write_all(&head).await.unwrap();
        // Announced, never sent: the receiver closes the connection instead of waiting for it.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "kind {kind}: connection closed, got {read:?}"
        );
    }
}
