//! The three services together: the end-to-end tests (`tests/it`, `tests/canary`) and the
//! pipeline benchmark (`benches/pipeline.rs`, `make bench`).
//!
//! [`Pipeline`] starts a vault, a writer and an ingestor in this process, each on port 0, on a
//! fresh database, queue pair and KMS key of the local stack (`make up`), and reads what they
//! produced: the rows of `user_logins` and the messages of the DLQ.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Text};
use diesel_async::RunQueryDsl;
use fetchreward_dlq::Opener;
use fetchreward_ingestor::{Application as Ingestor, IngestorConfig};
use fetchreward_model::attributes;
use fetchreward_telemetry::logging::LoggingGuard;
use fetchreward_telemetry::{LogFormat, LoggingConfig};
use fetchreward_testkit::{CapturedLogs, QueuePair, Spawned, Stack, TestDatabase, create_kms_key};
use fetchreward_vault::kms::{KmsKeyProvider, KmsSettings};
use fetchreward_vault::{Application as Vault, VaultConfig};
use fetchreward_writer::{Application as Writer, WriterConfig};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

/// Redeliveries allowed before SQS moves a message to the DLQ: high, so that outages in tests
/// never redrive a valid message.
const MAX_RECEIVE_COUNT: u32 = 50;

/// Everything one end-to-end test runs.
pub struct Pipeline {
    /// The local stack's endpoints.
    pub stack: Stack,
    /// A client of its SQS emulator.
    pub sqs: aws_sdk_sqs::Client,
    /// The test's database (the vault's schema and `user_logins`).
    pub db: TestDatabase,
    /// The test's source queue and DLQ.
    pub queues: QueuePair,
    /// The vault's KMS key.
    pub kms_key: String,
    /// The KMS key that seals the DLQ's bodies.
    pub dlq_kms_key: String,
    /// Where the vault serves gRPC (kept across restarts).
    pub vault_addr: SocketAddr,
    /// Where the writer serves gRPC (kept across restarts).
    pub writer_addr: SocketAddr,
    /// The running vault.
    pub vault: Option<Spawned<()>>,
    /// The running writer.
    pub writer: Option<Spawned<()>>,
    /// The running ingestor.
    pub ingestor: Option<Spawned<()>>,
    /// Where the running ingestor serves `/metrics` and `/readyz`.
    pub ingestor_http: Option<SocketAddr>,
}

fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> HashMap<&'a str, &'a str> {
    let mut env: HashMap<&str, &str> = HashMap::from([
        ("LOG_FORMAT", "text"),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("SHUTDOWN_GRACE_SECS", "5"),
    ]);
    env.extend(pairs.iter().copied());
    env
}

impl Pipeline {
    /// Fresh resources and the vault and writer started; the ingestor is started separately.
    pub async fn start() -> Pipeline {
        Pipeline::start_with_max_receive_count(MAX_RECEIVE_COUNT).await
    }

    /// [`Pipeline::start`] with a source queue whose redrive policy moves a message to the DLQ
    /// after `max_receive_count` deliveries (1: anything not handled on its first receipt).
    pub async fn start_with_max_receive_count(max_receive_count: u32) -> Pipeline {
        let stack = Stack::from_env();
        let sqs = stack.sqs();
        let db = TestDatabase::create(&stack).await;
        let queues = QueuePair::create(&sqs, max_receive_count, 5).await;
        let kms_key = create_kms_key(&stack.kms()).await;
        let dlq_kms_key = create_kms_key(&stack.kms()).await;
        let mut pipeline = Pipeline {
            stack,
            sqs,
            db,
            queues,
            kms_key,
            dlq_kms_key,
            vault_addr: "127.0.0.1:0".parse().expect("addr"),
            writer_addr: "127.0.0.1:0".parse().expect("addr"),
            vault: None,
            writer: None,
            ingestor: None,
            ingestor_http: None,
        };
        pipeline.start_vault().await;
        pipeline.start_writer().await;
        pipeline
    }

    /// Starts the vault (again on its previous port, if it ran before).
    pub async fn start_vault(&mut self) {
        let addr = self.vault_addr.to_string();
        let config = VaultConfig::from_env(&env_of(&[
            ("DATABASE_URL", &self.db.url),
            ("GRPC_ADDR", &addr),
            ("KMS_KEY_ID", &self.kms_key),
            ("AUTHZ_TOKENIZE", "anonymous"),
            ("AUTHZ_DETOKENIZE", "anonymous"),
            ("AUTHZ_LOOKUP", "anonymous"),
            ("AUTHZ_ADMIN", "anonymous"),
        ]))
        .expect("vault configuration");
        let provider = KmsKeyProvider::from_sdk_config(
            &self.stack.aws_config(&self.stack.kms_endpoint),
            KmsSettings::single_key(self.kms_key.clone()),
        );
        let app = Vault::build(config, Arc::new(provider)).await.expect("the vault starts");
        self.vault_addr = app.grpc_addr();
        self.vault = Some(Spawned::new(|shutdown| async move {
            app.run_until_stopped(shutdown).await.expect("the vault serves");
        }));
    }

    /// Starts one more vault on the pipeline's database and KMS key, on a free port, with
    /// `extra` settings over the pipeline's own (a low rate limit, TLS...). Returns it and its
    /// gRPC address.
    pub async fn start_extra_vault(&self, extra: &[(&str, &str)]) -> (Spawned<()>, SocketAddr) {
        let mut pairs = vec![
            ("DATABASE_URL", self.db.url.as_str()),
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("KMS_KEY_ID", self.kms_key.as_str()),
            ("AUTHZ_TOKENIZE", "anonymous"),
        ];
        pairs.extend_from_slice(extra);
        let config = VaultConfig::from_env(&env_of(&pairs)).expect("vault configuration");
        let provider = KmsKeyProvider::from_sdk_config(
            &self.stack.aws_config(&self.stack.kms_endpoint),
            KmsSettings::single_key(self.kms_key.clone()),
        );
        let app = Vault::build(config, Arc::new(provider)).await.expect("the vault starts");
        let addr = app.grpc_addr();
        let running = Spawned::new(|shutdown| async move {
            app.run_until_stopped(shutdown).await.expect("the vault serves");
        });
        (running, addr)
    }

    /// Starts the writer (again on its previous port, if it ran before).
    pub async fn start_writer(&mut self) {
        let addr = self.writer_addr.to_string();
        let config = WriterConfig::from_env(&env_of(&[
            ("DATABASE_URL", &self.db.url),
            ("GRPC_ADDR", &addr),
            ("AUTHZ_WRITE", "anonymous"),
        ]))
        .expect("writer configuration");
        let app = Writer::build(config).await.expect("the writer starts");
        self.writer_addr = app.grpc_addr();
        self.writer = Some(Spawned::new(|shutdown| async move {
            app.run_until_stopped(shutdown).await.expect("the writer serves");
        }));
    }

    /// Starts the ingestor with extra settings (e.g. a short visibility timeout).
    pub async fn start_ingestor(&mut self, extra: &[(&str, &str)]) {
        let vault = format!("http://{}", self.vault_addr);
        let writer = format!("http://{}", self.writer_addr);
        let mut pairs = vec![
            ("QUEUE_URL", self.queues.queue_url.as_str()),
            ("DLQ_URL", self.queues.dlq_url.as_str()),
            ("DLQ_KMS_KEY_ID", self.dlq_kms_key.as_str()),
            ("AWS_ENDPOINT_URL_KMS", self.stack.kms_endpoint.as_str()),
            ("VAULT_ENDPOINT", vault.as_str()),
            ("WRITER_ENDPOINT", writer.as_str()),
            ("RECEIVE_WAIT_SECS", "1"),
            ("VISIBILITY_TIMEOUT_SECS", "5"),
            ("RETRY_GIVE_UP_SECS", "2"),
        ];
        pairs.extend_from_slice(extra);
        let config = IngestorConfig::from_env(&env_of(&pairs)).expect("ingestor configuration");
        let aws = self.stack.aws_config(&self.stack.sqs_endpoint);
        let app = Ingestor::build(config, &aws).await.expect("the ingestor starts");
        self.ingestor_http = Some(app.http_addr());
        self.ingestor = Some(Spawned::new(|shutdown| async move {
            app.run_until_stopped(shutdown).await.expect("the ingestor runs");
        }));
    }

    /// Stops the vault gracefully.
    pub async fn stop_vault(&mut self) {
        self.vault.take().expect("the vault runs").stop().await;
    }

    /// Stops the writer gracefully.
    pub async fn stop_writer(&mut self) {
        self.writer.take().expect("the writer runs").stop().await;
    }

    /// Stops the ingestor gracefully.
    pub async fn stop_ingestor(&mut self) {
        self.ingestor.take().expect("the ingestor runs").stop().await;
    }

    /// Sends bodies to the source queue, ten per call; returns their message ids in order.
    pub async fn send(&self, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::with_capacity(bodies.len());
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .expect("entry")
                })
                .collect();
            let output = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queues.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("sends");
            assert!(output.failed().is_empty(), "every message is accepted");
            let mut sent: Vec<_> = output.successful().to_vec();
            sent.sort_by_key(|entry| entry.id().parse::<usize>().expect("numeric id"));
            ids.extend(sent.into_iter().map(|entry| entry.message_id().to_owned()));
        }
        ids
    }

    /// Waits until the source queue holds no message, visible or in flight.
    pub async fn wait_drained(&self, timeout: Duration) {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.queues.queue_url)
                .attribute_names(Name::ApproximateNumberOfMessages)
                .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .expect("queue attributes")
                .attributes
                .unwrap_or_default();
            let count =
                |name: Name| attributes.get(&name).map_or(0, |v| v.parse::<u64>().unwrap_or(0));
            let (visible, in_flight) = (
                count(Name::ApproximateNumberOfMessages),
                count(Name::ApproximateNumberOfMessagesNotVisible),
            );
            if visible == 0 && in_flight == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not drained after {timeout:?}: {visible} visible, {in_flight} in flight"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many times the ingestor gave up on a batch because `service` (`vault` or
    /// `writer`) failed: its `fetchreward_ingestor_dependency_failures_total`.
    pub async fn dependency_failures(&self, service: &str) -> u64 {
        let addr = self.ingestor_http.expect("the ingestor runs");
        let metrics = fetchreward_testkit::http_get(addr, "/metrics").await;
        let series =
            format!(r#"fetchreward_ingestor_dependency_failures_total{{service="{service}"}} "#);
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the ingestor has given up on `more` batches more than `since` because
    /// `service` failed: proof that it met an outage, without guessing how long that takes.
    pub async fn wait_for_dependency_failures(&self, service: &str, since: u64, more: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.dependency_failures(service).await < since + more {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the ingestor did not meet the {service} outage"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every row of user_logins.
    pub async fn rows(&self) -> Vec<Row> {
        let mut conn = self.db.connect().await;
        diesel::sql_query(
            "SELECT message_id, user_id, device_type, masked_ip, masked_device_id, locale, \
                    app_version, app_version_raw, create_date::text AS create_date \
             FROM user_logins ORDER BY message_id",
        )
        .load(&mut conn)
        .await
        .expect("reads user_logins")
    }

    /// Every message of the DLQ (consumed), its body opened with the DLQ key.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let opener = Opener::new(self.stack.kms());
        let mut letters = Vec::new();
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(&self.queues.dlq_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receives from the DLQ");
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return letters;
            }
            for message in messages {
                let attribute = |name: &str| {
                    message
                        .message_attributes
                        .as_ref()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value.clone())
                };
                let sealed = message.body.clone().unwrap_or_default();
                let reason_code = attribute(attributes::REASON_CODE);
                let body = match (&reason_code, attribute(attributes::SOURCE_MESSAGE_ID)) {
                    (Some(code), Some(source)) => {
                        opener.open(&sealed, &source, code).await.expect("the DLQ body opens")
                    }
                    // Moved by the redrive policy: as it was sent.
                    _ => sealed.clone(),
                };
                letters.push(DeadLetter {
                    body,
                    sealed,
                    reason: attribute(attributes::REASON),
                    reason_code,
                    trace_id: attribute("trace-id"),
                });
                self.sqs
                    .delete_message()
                    .queue_url(&self.queues.dlq_url)
                    .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .expect("deletes from the DLQ");
            }
        }
    }
}

/// A row of user_logins.
#[derive(Debug, Clone, QueryableByName)]
pub struct Row {
    /// The idempotency key.
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id: Option<String>,
    /// As sent.
    #[diesel(sql_type = Nullable<Text>)]
    pub user_id: Option<String>,
    /// The ip's token.
    #[diesel(sql_type = Nullable<Text>)]
    pub masked_ip: Option<String>,
    /// The device id's token.
    #[diesel(sql_type = Nullable<Text>)]
    pub masked_device_id: Option<String>,
    /// As sent.
    #[diesel(sql_type = Nullable<Text>)]
    pub device_type: Option<String>,
    /// As sent.
    #[diesel(sql_type = Nullable<Text>)]
    pub locale: Option<String>,
    /// The integer form.
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    pub app_version: Option<i32>,
    /// As sent.
    #[diesel(sql_type = Nullable<Text>)]
    pub app_version_raw: Option<String>,
    /// As text, `YYYY-MM-DD`.
    #[diesel(sql_type = Nullable<Text>)]
    pub create_date: Option<String>,
}

impl Row {
    /// Every column but the message id.
    pub fn content(&self) -> impl PartialEq + std::fmt::Debug + '_ {
        (
            &self.user_id,
            &self.device_type,
            &self.masked_ip,
            &self.masked_device_id,
            &self.locale,
            self.app_version,
            &self.app_version_raw,
            &self.create_date,
        )
    }
}

/// A dead-lettered message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The body, as sent (opened, for the ingestor's sealed copies).
    pub body: String,
    /// The body as the DLQ holds it: the sealed envelope, or, for a message the redrive policy
    /// moved, the body as sent.
    pub sealed: String,
    /// `fetchreward-reason`.
    pub reason: Option<String>,
    /// `fetchreward-reason-code`.
    pub reason_code: Option<String>,
    /// A producer's attribute that the DLQ copy carries over.
    pub trace_id: Option<String>,
}

/// What the process's services log and trace, captured for a test: JSON log lines at debug
/// level, and spans in an in-memory OpenTelemetry exporter. Installing it takes the
/// process-wide subscriber, so a test that does lives in a binary of its own.
pub struct Captured {
    /// The log lines.
    pub logs: CapturedLogs,
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: LoggingGuard,
}

impl Captured {
    /// Installs the subscriber for `service` (the traces' `service.name`).
    pub fn install(service: &'static str) -> Captured {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let logs = CapturedLogs::default();
        let sink = logs.clone();
        let config = LoggingConfig {
            service,
            format: LogFormat::Json,
            filter: "debug".into(),
            otlp_endpoint: None,
        };
        let (subscriber, guard) = fetchreward_telemetry::logging::subscriber_with_tracer(
            &config,
            move || sink.clone(),
            Some(provider.clone()),
        )
        .expect("builds");
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        Captured { logs, exporter, provider, _guard: guard }
    }

    /// Every span finished so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flushes");
        self.exporter.get_finished_spans().expect("spans")
    }
}
