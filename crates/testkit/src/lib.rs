//! Test helpers on the local stack (`make up`): a fresh database, queue pair and KMS key for
//! every test, and services spawned on port 0.
//!
//! Endpoints come from the variables `make up` prints (`DATABASE_URL`, `AWS_ENDPOINT_URL_SQS`,
//! `AWS_ENDPOINT_URL_KMS`), with the stack's defaults when they are unset. Tests only read the
//! environment, never set it, and share nothing mutable: every resource has a unique name.

mod cluster;

use std::future::Future;

pub use cluster::PgCluster;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

/// The region every emulator is addressed in.
pub const REGION: &str = "us-east-1";

/// Endpoints of the local stack.
#[derive(Debug, Clone)]
pub struct Stack {
    /// A URL of the local cluster; tests replace its database name.
    pub database_url: String,
    /// fauxqs.
    pub sqs_endpoint: String,
    /// moto.
    pub kms_endpoint: String,
    /// moto's S3 (the same server as its KMS).
    pub s3_endpoint: String,
    /// The CA that signed the local cluster's TLS certificate.
    pub pg_ca_file: String,
}

impl Stack {
    /// The stack described by the environment, or the defaults of `dev/env.sh`.
    pub fn from_env() -> Stack {
        let var = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
        Stack {
            database_url: var("DATABASE_URL", "postgres://postgres@127.0.0.1:55432/fetchreward"),
            sqs_endpoint: var("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:54566"),
            kms_endpoint: var("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:54599"),
            s3_endpoint: var("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:54599"),
            pg_ca_file: var(
                "FR_PG_CA_FILE",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/dev/pg-tls/ca.pem"),
            ),
        }
    }

    /// The URL of database `name` on the local cluster.
    pub fn database_url_of(&self, name: &str) -> String {
        let (base, query) = match self.database_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (self.database_url.as_str(), None),
        };
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        }
    }

    /// AWS SDK settings pointing at an emulator, with dummy credentials.
    pub fn aws_config(&self, endpoint: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
                aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "testkit"),
            ))
            .build()
    }

    /// An SQS client on fauxqs.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.aws_config(&self.sqs_endpoint))
    }

    /// A KMS client on moto.
    pub fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.aws_config(&self.kms_endpoint))
    }

    /// An S3 client on moto (path-style addressing, as moto needs).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.aws_config(&self.s3_endpoint))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// A new bucket on moto, with a unique name.
    pub async fn s3_bucket(&self) -> String {
        let bucket = unique_name("test").replace('_', "-");
        self.s3().create_bucket().bucket(&bucket).send().await.expect("moto creates a bucket");
        bucket
    }
}

/// Fetch's original sample queue (`sample_data.json.gz`, 100 messages), where the tests that
/// replay it find it: at `FR_FETCH_SAMPLE` when that is set — then it must be there, and a
/// missing file fails the test rather than skipping it (`.ci/run` sets it whenever the file
/// is beside the checkout) — or else beside the checkout, in `../shared/data/`. `None` when
/// neither applies: the caller skips, and says so.
pub fn fetch_sample() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("FR_FETCH_SAMPLE") {
        let path = std::path::PathBuf::from(path);
        assert!(path.is_file(), "FR_FETCH_SAMPLE names {}, which is not a file", path.display());
        return Some(path);
    }
    let beside = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/sample_data.json.gz");
    if beside.is_file() {
        return Some(beside);
    }
    eprintln!("skipped: Fetch's sample is not beside this checkout and FR_FETCH_SAMPLE is unset");
    None
}

/// A unique lowercase name with a prefix, safe as a database or queue name.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// An empty database created for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDatabase {
    /// Creates a database with a unique name on the local cluster.
    pub async fn create(stack: &Stack) -> TestDatabase {
        let name = unique_name("test");
        let mut admin = AsyncPgConnection::establish(&stack.database_url_of("postgres"))
            .await
            .expect("the local Postgres answers (run `make up`)");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        TestDatabase { url: stack.database_url_of(&name), name }
    }

    /// A direct connection, for assertions.
    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.expect("connects to the test database")
    }
}

/// A source queue and its dead-letter queue, created for one test.
#[derive(Debug, Clone)]
pub struct QueuePair {
    /// The source queue, with a redrive policy to the DLQ.
    pub queue_url: String,
    /// The dead-letter queue.
    pub dlq_url: String,
}

impl QueuePair {
    /// Creates `<unique>-dlq` and `<unique>` with `maxReceiveCount` and a visibility timeout.
    pub async fn create(
        sqs: &aws_sdk_sqs::Client,
        max_receive_count: u32,
        visibility_timeout_secs: u32,
    ) -> QueuePair {
        use aws_sdk_sqs::types::QueueAttributeName;
        let name = unique_name("test").replace('_', "-");
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .expect("creates the DLQ (run `make up`)")
            .queue_url
            .expect("a queue URL");
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("DLQ attributes")
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
            .expect("the DLQ's ARN");
        let redrive = format!(
            r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}"#
        );
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_timeout_secs.to_string())
            .send()
            .await
            .expect("creates the queue")
            .queue_url
            .expect("a queue URL");
        QueuePair { queue_url, dlq_url }
    }
}

/// Creates a symmetric KMS key for one test and returns its id.
pub async fn create_kms_key(kms: &aws_sdk_kms::Client) -> String {
    kms.create_key()
        .description("fetchreward test key")
        .send()
        .await
        .expect("creates a KMS key (run `make up`)")
        .key_metadata
        .expect("key metadata")
        .key_id
}

/// A task that is cancelled when the guard is dropped: a service spawned by a test.
#[derive(Debug)]
pub struct Spawned<T> {
    /// Cancels the task (a graceful shutdown).
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<T>>,
}

impl<T: Send + 'static> Spawned<T> {
    /// Spawns `run(shutdown)`.
    pub fn new<F, Fut>(run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone()));
        Spawned { shutdown, task: Some(task) }
    }

    /// Cancels the task and waits for its result.
    pub async fn stop(mut self) -> T {
        self.shutdown.cancel();
        self.task.take().expect("not stopped yet").await.expect("the task did not panic")
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A TCP proxy in front of a server, which a test can take down and bring back: what a
/// database restart looks like to its clients (every connection cut, new ones refused for a
/// while), without touching the server other tests share. It can also hold every chunk a
/// client sends for a fixed delay before passing it on ([`TcpProxy::start_with_delay`]): each
/// request then takes that much longer, as a cloud service's requests do over the network.
pub struct TcpProxy {
    /// The address clients connect to.
    pub addr: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    delay: std::time::Duration,
    tasks: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TcpProxy {
    /// A proxy on a free local port forwarding to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> TcpProxy {
        TcpProxy::start_with_delay(upstream, std::time::Duration::ZERO).await
    }

    /// A proxy that passes on what clients send `delay` after it arrived (in order); answers
    /// come back at once.
    pub async fn start_with_delay(
        upstream: std::net::SocketAddr,
        delay: std::time::Duration,
    ) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound");
        let proxy = TcpProxy {
            addr,
            upstream,
            delay,
            tasks: Default::default(),
            accepted: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (upstream, delay) = (self.upstream, self.delay);
        let tasks = self.tasks.clone();
        let accept_tasks = tasks.clone();
        let accepted = self.accepted.clone();
        tasks.lock().expect("not poisoned").spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                accept_tasks.lock().expect("not poisoned").spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    if delay.is_zero() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    } else {
                        forward_delayed(client, server, delay).await;
                    }
                });
            }
        });
    }

    /// How many connections clients have opened through the proxy so far.
    pub fn connections(&self) -> usize {
        // Spelled out: diesel-async's `RunQueryDsl::load`, in scope here, would take `.load`.
        std::sync::atomic::AtomicUsize::load(&self.accepted, std::sync::atomic::Ordering::Relaxed)
    }

    /// Cuts every connection and stops listening: the server is "down".
    pub fn stop(&self) {
        self.tasks.lock().expect("not poisoned").abort_all();
    }

    /// Listens again on the same address: the server is "back".
    pub async fn resume(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("rebinds");
        self.serve(listener);
    }
}

/// Copies client to server with every chunk held `delay` after its arrival, server to client
/// at once, until either side closes.
async fn forward_delayed(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    delay: std::time::Duration,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (chunks, mut due) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read) = client_read.read(&mut buffer).await {
            let at = tokio::time::Instant::now() + delay;
            if read == 0 || chunks.send((at, buffer[..read].to_vec())).is_err() {
                break;
            }
        }
    };
    let writing = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if server_write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let answering = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    tokio::select! {
        _ = async { tokio::join!(reading, writing) } => {}
        () = answering => {}
    }
}

/// A plain HTTP/1.1 GET of `path` on `addr` (the operations servers): the whole response,
/// status line, headers and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads the response");
    response
}

/// Everything written to it, kept in memory: a log sink for tests that read what services
/// logged. Clones share the buffer.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// What was written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The TLS alert with which a peer refused the handshake, e.g. `CertificateExpired` or
/// `DecryptError`, found among the causes of a failed connection or call; `None` when the
/// failure was something else (a gRPC status the service answered, say).
pub fn tls_alert(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    const MARK: &str = "received fatal alert: ";
    let chain = fetchreward_runtime::service::error_chain(err);
    let at = chain.find(MARK)? + MARK.len();
    let alert: String = chain[at..].chars().take_while(char::is_ascii_alphanumeric).collect();
    (!alert.is_empty()).then_some(alert)
}

/// A throwaway PKI for one test: a CA and certificates for `spiffe://fetchreward/<name>`
/// identities, as files (the services read files) in a directory of the test's own, readable
/// by its owner only and removed when the value is dropped.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: fetchreward_devpki::DevCa,
}

/// The three files of one TLS identity.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    /// The CA that verifies peers.
    pub ca: String,
    /// The certificate.
    pub cert: String,
    /// The private key.
    pub key: String,
}

impl TlsPaths {
    /// The `TLS_*` settings of a service using this identity.
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [("TLS_CA_FILE", &self.ca), ("TLS_CERT_FILE", &self.cert), ("TLS_KEY_FILE", &self.key)]
    }

    /// A client configuration presenting this identity and verifying servers against the CA.
    pub fn client_tls(&self) -> tonic::transport::ClientTlsConfig {
        let read = |path: &str| std::fs::read(path).expect("reads a TLS file");
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&self.ca)))
            .identity(tonic::transport::Identity::from_pem(read(&self.cert), read(&self.key)))
    }
}

impl TestPki {
    /// A new CA, in a new directory.
    pub fn new() -> TestPki {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            tempfile::Builder::new().prefix("fr_pki_").tempdir().expect("creates a directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("makes the directory private");
        let ca = fetchreward_devpki::DevCa::new("test CA").expect("creates a CA");
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).expect("writes the CA");
        TestPki { dir, ca }
    }

    /// The directory of the files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The path of the CA certificate.
    pub fn ca_path(&self) -> String {
        self.dir().join("ca.pem").display().to_string()
    }

    /// A currently valid identity `spiffe://fetchreward/<name>`.
    pub fn identity(&self, name: &str) -> TlsPaths {
        let uri = format!("spiffe://fetchreward/{name}");
        self.issue(name, &[uri], fetchreward_devpki::Validity::Current)
    }

    /// An identity whose certificate expired yesterday.
    pub fn expired(&self, name: &str) -> TlsPaths {
        let uri = format!("spiffe://fetchreward/{name}");
        self.issue(name, &[uri], fetchreward_devpki::Validity::Expired)
    }

    /// A person's short-lived certificate: `spiffe://fetchreward/person/<person>`, 8 hours.
    pub fn person(&self, person: &str) -> TlsPaths {
        let uri = fetchreward_devpki::person_id(person);
        self.issue(&format!("person-{person}"), &[uri], fetchreward_devpki::Validity::Hours(8))
    }

    /// A valid certificate, stored as `<file>`, whose URI SANs are `uris` (none, several, of
    /// another trust domain...).
    pub fn with_uris(&self, file: &str, uris: &[&str]) -> TlsPaths {
        let uris: Vec<String> = uris.iter().map(|uri| (*uri).to_owned()).collect();
        self.issue(file, &uris, fetchreward_devpki::Validity::Current)
    }

    fn issue(
        &self,
        file: &str,
        uris: &[String],
        validity: fetchreward_devpki::Validity,
    ) -> TlsPaths {
        let file = match validity {
            fetchreward_devpki::Validity::Current => file.to_owned(),
            fetchreward_devpki::Validity::Expired => format!("{file}-expired"),
            fetchreward_devpki::Validity::Hours(hours) => format!("{file}-{hours}h"),
        };
        let issued = self.ca.issue_with_uris(&file, uris, validity).expect("issues");
        let cert = self.dir().join(format!("{file}.pem"));
        let key = self.dir().join(format!("{file}.key"));
        std::fs::write(&cert, issued.cert).expect("writes the certificate");
        fetchreward_devpki::write_private(&key, &issued.key).expect("writes the key");
        TlsPaths {
            ca: self.ca_path(),
            cert: cert.display().to_string(),
            key: key.display().to_string(),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delaying_proxy_holds_each_request_and_passes_everything_on() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = server.accept().await.unwrap();
            let mut buffer = [0u8; 5];
            while conn.read_exact(&mut buffer).await.is_ok() {
                conn.write_all(&buffer).await.unwrap(); // echo each 5-byte request
            }
        });
        let delay = std::time::Duration::from_millis(50);
        let proxy = TcpProxy::start_with_delay(upstream, delay).await;
        let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        for request in [b"ping1", b"ping2"] {
            let sent = std::time::Instant::now();
            client.write_all(request).await.unwrap();
            let mut answer = [0u8; 5];
            client.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, request);
            assert!(sent.elapsed() >= delay, "answered after {:?}", sent.elapsed());
        }
    }

    #[test]
    fn database_urls_swap_only_the_name() {
        let stack = Stack {
            database_url: "postgres://postgres@127.0.0.1:55432/fetchreward?sslmode=disable".into(),
            sqs_endpoint: String::new(),
            kms_endpoint: String::new(),
            s3_endpoint: String::new(),
            pg_ca_file: String::new(),
        };
        assert_eq!(
            stack.database_url_of("test_1"),
            "postgres://postgres@127.0.0.1:55432/test_1?sslmode=disable"
        );
    }

    #[test]
    fn a_handshake_alert_is_found_among_the_causes() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateExpired",
        );
        let status = tonic::Status::from_error(Box::new(io));
        assert_eq!(tls_alert(&status).as_deref(), Some("CertificateExpired"));
        assert_eq!(tls_alert(&tonic::Status::permission_denied("no")), None);
    }

    #[test]
    fn test_keys_are_private_and_gone_with_the_pki() {
        use std::os::unix::fs::PermissionsExt;
        let pki = TestPki::new();
        let dir = pki.dir().to_owned();
        let paths = pki.identity("reader");
        let mode =
            |path: &str| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&dir.display().to_string()), 0o700);
        drop(pki);
        assert!(!dir.exists());
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
        assert!(
            unique_name("t")
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }
}
