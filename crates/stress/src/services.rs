//! One set of the pipeline's services for one run, as processes of the release binaries: a
//! vault and a writer on a fresh database, KMS key and free ports, and any number of ingestors
//! on a fresh queue pair, with mutual TLS from a throwaway PKI (as in production) or in
//! plaintext. The pipeline benchmark, `fetchreward-stress chaos` and `fetchreward-stress soak`
//! all start their services here.

use std::path::PathBuf;

use fetchreward_testkit::{QueuePair, Stack, TestDatabase, TestPki, TlsPaths, create_kms_key};

use crate::process::{ProcessError, Service, free_port};

/// How a set is started.
#[derive(Debug, Clone)]
pub struct SetConfig {
    /// Mutual TLS between the services (`true`, as in production) or plaintext.
    pub tls: bool,
    /// The source queue's redrive policy: deliveries before SQS moves a message to the DLQ.
    pub max_receive_count: u32,
    /// The source queue's visibility timeout, in seconds.
    pub visibility_timeout_secs: u32,
    /// Settings of every ingestor on top of the set's own (`POLLERS`, `WORKERS`, ...).
    pub ingestor_settings: Vec<(&'static str, String)>,
    /// Where the services' logs go (`vault.log`, `writer.log`, `ingestor.log`,
    /// `ingestor-2.log`, ...); created if missing.
    pub log_dir: PathBuf,
}

impl SetConfig {
    /// A set as production runs it (deploy/terraform): mutual TLS, a redrive policy of five
    /// deliveries, a visibility timeout of 30 s, the ingestor's defaults; logs in `log_dir`.
    pub fn production_like(log_dir: PathBuf) -> Self {
        SetConfig {
            tls: true,
            max_receive_count: 5,
            visibility_timeout_secs: 30,
            ingestor_settings: Vec::new(),
            log_dir,
        }
    }
}

/// The two ports of a gRPC service.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// gRPC.
    pub grpc: u16,
    /// The operations server (`/readyz`, `/metrics`).
    pub http: u16,
}

/// A running vault and writer, the ingestors started so far, and the resources they use.
pub struct ServiceSet {
    /// The set's own database (the vault's schema and `user_logins`).
    pub database: TestDatabase,
    /// The set's source queue and DLQ.
    pub queues: QueuePair,
    /// The vault's KMS key.
    pub kms_key: String,
    /// The vault.
    pub vault: Service,
    /// Its ports.
    pub vault_ports: Ports,
    /// The writer.
    pub writer: Service,
    /// Its ports.
    pub writer_ports: Ports,
    /// The ingestors, in the order they were started.
    pub ingestors: Vec<Service>,
    /// Their operations ports, in the same order.
    pub ingestor_ports: Vec<u16>,
    stack: Stack,
    config: SetConfig,
    /// The ingestors' identity, issued once: every replica reads the same files.
    ingestor_tls: Option<TlsPaths>,
    /// Holds the certificate files' directory while the services use them.
    _pki: Option<TestPki>,
}

impl std::fmt::Debug for ServiceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSet")
            .field("database", &self.database.name)
            .field("queue", &self.queues.queue_url)
            .field("vault", &self.vault)
            .field("writer", &self.writer)
            .field("ingestors", &self.ingestors)
            .finish_non_exhaustive()
    }
}

impl ServiceSet {
    /// Creates a database, a queue pair, a KMS key and (with TLS) a PKI, starts the vault and
    /// the writer on free ports and waits until both are ready. No ingestor runs yet: seed the
    /// queue, then [`ServiceSet::start_ingestor`].
    pub async fn start(stack: &Stack, config: SetConfig) -> Result<ServiceSet, ProcessError> {
        std::fs::create_dir_all(&config.log_dir)
            .map_err(|source| ProcessError::Log { path: config.log_dir.clone(), source })?;
        let database = TestDatabase::create(stack).await;
        let sqs = stack.sqs();
        let queues =
            QueuePair::create(&sqs, config.max_receive_count, config.visibility_timeout_secs).await;
        let kms_key = create_kms_key(&stack.kms()).await;
        let pki = config.tls.then(TestPki::new);
        let identity = |name: &str| pki.as_ref().map(|pki| pki.identity(name));
        let vault_ports = Ports { grpc: free_port(), http: free_port() };
        let writer_ports = Ports { grpc: free_port(), http: free_port() };

        let mut vault = Service::start(
            "vault",
            "fetchreward-vault",
            &service_env(
                stack,
                identity("vault").as_ref(),
                &[("AUTHZ_TOKENIZE", "ingestor")],
                vec![
                    ("DATABASE_URL", database.url.clone()),
                    ("KMS_KEY_ID", kms_key.clone()),
                    ("GRPC_ADDR", format!("127.0.0.1:{}", vault_ports.grpc)),
                    ("HTTP_ADDR", format!("127.0.0.1:{}", vault_ports.http)),
                ],
            ),
            &config.log_dir.join("vault.log"),
        )?;
        let mut writer = Service::start(
            "writer",
            "fetchreward-writer",
            &service_env(
                stack,
                identity("writer").as_ref(),
                &[("AUTHZ_WRITE", "ingestor")],
                vec![
                    ("DATABASE_URL", database.url.clone()),
                    ("GRPC_ADDR", format!("127.0.0.1:{}", writer_ports.grpc)),
                    ("HTTP_ADDR", format!("127.0.0.1:{}", writer_ports.http)),
                ],
            ),
            &config.log_dir.join("writer.log"),
        )?;
        vault.wait_ready(vault_ports.http).await?;
        writer.wait_ready(writer_ports.http).await?;
        let ingestor_tls = identity("ingestor");
        Ok(ServiceSet {
            database,
            queues,
            kms_key,
            vault,
            vault_ports,
            writer,
            writer_ports,
            ingestors: Vec::new(),
            ingestor_ports: Vec::new(),
            stack: stack.clone(),
            config,
            ingestor_tls,
            _pki: pki,
        })
    }

    /// Starts one more ingestor on the set's queues, vault and writer, reaching SQS at
    /// `sqs_endpoint` (a proxy in front of the emulator, say) or at the stack's own endpoint.
    /// The first is named `ingestor`, the next `ingestor-2`, and so on. It is not waited for:
    /// it starts consuming as soon as it runs.
    pub fn start_ingestor(&mut self, sqs_endpoint: Option<&str>) -> Result<(), ProcessError> {
        let number = self.ingestors.len() + 1;
        let name = if number == 1 { "ingestor".to_owned() } else { format!("ingestor-{number}") };
        let http = free_port();
        let scheme = if self.config.tls { "https://localhost" } else { "http://127.0.0.1" };
        let mut settings = vec![
            ("QUEUE_URL", self.queues.queue_url.clone()),
            ("DLQ_URL", self.queues.dlq_url.clone()),
            // The set's one KMS key seals the DLQ too, under its own encryption context; a
            // deployment gives the DLQ a key of its own (deploy/terraform).
            ("DLQ_KMS_KEY_ID", self.kms_key.clone()),
            ("VAULT_ENDPOINT", format!("{scheme}:{}", self.vault_ports.grpc)),
            ("WRITER_ENDPOINT", format!("{scheme}:{}", self.writer_ports.grpc)),
            ("HTTP_ADDR", format!("127.0.0.1:{http}")),
        ];
        settings.extend(self.config.ingestor_settings.iter().cloned());
        let mut env = service_env(&self.stack, self.ingestor_tls.as_ref(), &[], settings);
        if let Some(endpoint) = sqs_endpoint {
            for (key, value) in &mut env {
                if *key == "AWS_ENDPOINT_URL_SQS" {
                    *value = endpoint.to_owned();
                }
            }
        }
        let log = self.config.log_dir.join(format!("{name}.log"));
        let ingestor = Service::start(name, "fetchreward-ingestor", &env, &log)?;
        self.ingestors.push(ingestor);
        self.ingestor_ports.push(http);
        Ok(())
    }

    /// Every service of the set: vault, writer, then the ingestors.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        [&self.vault, &self.writer].into_iter().chain(self.ingestors.iter())
    }

    /// Stops the ingestors, then the writer, then the vault (SIGTERM: a graceful shutdown).
    pub fn stop(self) {
        for ingestor in self.ingestors.into_iter().rev() {
            ingestor.stop();
        }
        self.writer.stop();
        self.vault.stop();
    }
}

/// A service's environment: the AWS settings (emulator endpoints, dummy credentials), its
/// `own` settings, and its identity: with TLS its certificate files and the callers its
/// `policy` admits (`spiffe://fetchreward/<name>`), in plaintext `anonymous` for each policy.
fn service_env(
    stack: &Stack,
    tls: Option<&TlsPaths>,
    policy: &[(&'static str, &str)],
    own: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("AWS_REGION", fetchreward_testkit::REGION.into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ENDPOINT_URL_SQS", stack.sqs_endpoint.clone()),
        ("AWS_ENDPOINT_URL_KMS", stack.kms_endpoint.clone()),
    ];
    env.extend(own);
    match tls {
        None => env.extend(policy.iter().map(|(key, _)| (*key, "anonymous".to_owned()))),
        Some(paths) => {
            env.extend(paths.env().iter().map(|(key, value)| (*key, (*value).to_owned())));
            env.extend(
                policy.iter().map(|(key, who)| (*key, format!("spiffe://fetchreward/{who}"))),
            );
        }
    }
    env
}
