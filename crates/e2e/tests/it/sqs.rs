//! The ingestor's SQS queue on fauxqs.

use std::sync::Arc;
use std::time::Duration;

use fetchreward_cli::{queue, sample};
use fetchreward_dlq::Sealer;
use fetchreward_ingestor::queue::sqs::SqsQueue;
use fetchreward_ingestor::queue::{Queue, ReceivedMessage};
use fetchreward_testkit::{QueuePair, Stack, TcpProxy};

#[tokio::test]
async fn a_delete_of_a_large_batch_keeps_at_most_its_concurrency_of_calls_in_flight() {
    const MESSAGES: usize = 300;
    const CONCURRENCY: usize = 4;
    let stack = Stack::from_env();
    let sqs = stack.sqs();
    let pair = QueuePair::create(&sqs, 5, 60).await;
    let shape = sample::Shape { distinct_ips: MESSAGES, distinct_devices: MESSAGES };
    let bodies = sample::synthetic(MESSAGES, 7, shape);
    queue::seed(&sqs, &pair.queue_url, bodies).await.expect("seeds");
    let sealer = Arc::new(Sealer::new(stack.kms(), "alias/unused"));
    let direct = SqsQueue::new(sqs.clone(), &pair.queue_url, &pair.dlq_url, sealer.clone());
    let mut received = Vec::new();
    while received.len() < MESSAGES {
        let got = direct
            .receive(Duration::from_secs(1), Duration::from_secs(60))
            .await
            .expect("receives");
        assert!(!got.is_empty(), "every seeded message is received");
        received.extend(got);
    }

    // The deletes go through a proxy that counts connections: over HTTP/1.1 the SDK opens one
    // for each call in flight at once.
    let upstream = stack.sqs_endpoint.trim_start_matches("http://").parse().expect("host:port");
    let proxy = TcpProxy::start(upstream).await;
    let proxied = aws_sdk_sqs::Client::new(&stack.aws_config(&format!("http://{}", proxy.addr)));
    let deleting = SqsQueue::new(proxied, &pair.queue_url, &pair.dlq_url, sealer)
        .with_delete_concurrency(CONCURRENCY);
    let messages: Vec<&ReceivedMessage> = received.iter().collect();
    let failed = deleting.delete(&messages).await.expect("deletes");

    assert!(failed.is_empty(), "every entry deleted: {failed:?}");
    let connections = proxy.connections();
    assert!(
        (1..=CONCURRENCY).contains(&connections),
        "{} calls over {connections} connections",
        MESSAGES / 10
    );
    let left =
        direct.receive(Duration::from_secs(1), Duration::from_secs(60)).await.expect("receives");
    assert!(left.is_empty(), "nothing left to receive");
}
