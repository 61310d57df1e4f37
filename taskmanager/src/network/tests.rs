//! Two network environments (two "taskmanagers") on loopback: data arrives complete and in
//! order over a remote and a local channel, a slow consumer back-pressures the producer, and
//! the consumer never holds more buffers than its credit allows.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use tokio::net::TcpListener;

use super::*;

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
    let mut gate = InputGate::new(key, &[(0, vec![0])], 2, 3);
    let shared = gate.shared();
    consumer_env.gates.register(shared.clone(), &[0]);
    let id = ChannelId {
        epoch: 1,
        edge: 0,
        from: 0,
        to: 0,
    };
    let channel = producer_env
        .open_channel(id, &consumer_env.local_address, 2)
        .await
        .unwrap();
    // 1 KiB segments: each 1000-row batch (8 KB) becomes about 8 buffers.
    let mut writer = RecordWriter::new(WriterPartition::Forward, vec![channel], 1024, 0);
    let producer = tokio::spawn(async move {
        let mut blocked = Duration::ZERO;
        for i in 0..50 {
            writer.emit(&batch(i * 1000, 1000), &mut blocked).await.unwrap();
        }
        writer
            .broadcast_event(StreamEvent::EndOfPartition, &mut blocked)
            .await
            .unwrap();
        blocked
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
