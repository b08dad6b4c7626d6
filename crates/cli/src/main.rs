//! `fetchreward`: the operator's command.
//!
//! Endpoints come from flags or the same environment variables the services read
//! (`QUEUE_URL`, `DLQ_URL`, `VAULT_ENDPOINT`), so `eval "$(make -s env)"` is enough locally.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use comfy_table::Table;
use fetchreward_archive::{ArchiveTarget, Month, OlderThan};
use fetchreward_cli::{archive, database, dlq, health, queue, sample, subject, vault};
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{DetokenizeRequest, KeyTarget, LiftQuotaRequest};
use fetchreward_runtime::postgres;
use fetchreward_runtime::tls::TlsFiles;
use fetchreward_writer::shards::Shard;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "fetchreward",
    version,
    about = "Operate a Fetchreward pipeline",
    after_help = "Endpoints come from flags or from the variables the services read (QUEUE_URL, \
                  DLQ_URL, VAULT_ENDPOINT, AWS_*); for the local stack: eval \"$(make -s env)\".\n\n\
                  Examples:\n  fetchreward seed --sample\n  fetchreward queue wait-empty\n  \
                  fetchreward dlq list\n  fetchreward detokenize ip_v1_… --purpose \"ticket 123\" ..."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send login messages to the queue, in batches of ten.
    #[command(after_help = "Examples:\n  fetchreward seed --sample
  fetchreward seed --count 100000 --distinct 5000
  fetchreward seed --file ../shared/data/sample_data.json.gz")]
    Seed(SeedArgs),
    /// Queue depth, or wait until the queue is empty.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Read, redrive or empty the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Recover the original values of tokens (audited; needs a reader identity).
    #[command(
        after_help = "Examples:\n  fetchreward detokenize ip_v1_3q2… --purpose \"ticket 123\" --vault-endpoint https://localhost:50051 \\
    --tls-ca target/dev/certs/ca.pem --tls-cert target/dev/certs/reader.pem --tls-key target/dev/certs/reader.key"
    )]
    Detokenize {
        /// Tokens such as ip_v1_… or dev_v1_…
        #[arg(required = true)]
        tokens: Vec<String>,
        /// Why the values are needed: a purpose code when the vault has them (e.g. dsar), else
        /// free text such as a ticket reference (stored in the audit trail).
        #[arg(long)]
        purpose: String,
        /// Free text beside a purpose code, e.g. the request's reference (audited).
        #[arg(long, default_value = "")]
        note: String,
        /// Only the masked forms (66.194.53.x, ***-**-5928): RevealMasked, a weaker permission.
        #[arg(long)]
        masked: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Find a data subject's rows from a value they gave, export them revealed, or erase them
    /// (needs the lookup permission; export needs detokenize, forget an admin).
    Subject {
        #[command(subcommand)]
        command: SubjectCommand,
    },
    /// Raise one person's daily reveal limit for a purpose, for today (audited; admin).
    #[command(
        after_help = "Examples:\n  fetchreward quota lift --caller spiffe://fetchreward/person/alice \\
    --quota-purpose dsar --values 500 --purpose \"DSAR-42 has 1,200 rows\""
    )]
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
    },
    /// Plant decoy rows in user_logins whose tokens trip an alert when revealed (admin; writes
    /// the table through DATABASE_URL).
    #[command(
        after_help = "Examples:\n  fetchreward decoys plant --count 5 --purpose \"quarterly tripwires\""
    )]
    Decoys {
        #[command(subcommand)]
        command: DecoysCommand,
    },
    /// Destroy the stored values of tokens (audited; needs an admin identity).
    #[command(
        after_help = "Examples:\n  fetchreward forget dev_v1_Xk9… --purpose \"erasure request 42\" --vault-endpoint https://localhost:50051 \\
    --tls-ca target/dev/certs/ca.pem --tls-cert target/dev/certs/admin.pem --tls-key target/dev/certs/admin.key"
    )]
    Forget {
        /// Tokens whose values are to be destroyed.
        #[arg(required = true)]
        tokens: Vec<String>,
        /// Why, e.g. the erasure request's reference.
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Let tombstones (forgotten tokens) be stored again when their value is next tokenized
    /// (audited; needs an admin identity).
    #[command(
        after_help = "Examples:\n  fetchreward restore dev_v1_Xk9… --purpose \"erasure request 42 withdrawn\" --vault-endpoint https://localhost:50051 \\
    --tls-ca target/dev/certs/ca.pem --tls-cert target/dev/certs/admin.pem --tls-key target/dev/certs/admin.key"
    )]
    Restore {
        /// Forgotten tokens whose values may be stored again.
        #[arg(required = true)]
        tokens: Vec<String>,
        /// Why, e.g. the reference of the withdrawn request.
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Read the vault's audit trail, or verify its hash chain (needs an auditor identity).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Key management (needs an admin identity).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Whether a service is ready: exit status 0 if so, 1 with the reason if not (container
    /// healthchecks, `helm test`).
    Health {
        #[command(subcommand)]
        command: HealthCommand,
    },
    /// Move months of user_logins older than a cutoff to S3 as Parquet, list what is
    /// archived, bring a month back (runs as the role that owns the table).
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Spread user_logins across shard servers behind this database (postgres_fdw), once.
    Shards {
        #[command(subcommand)]
        command: ShardsCommand,
    },
    /// Rows of user_logins by month and by the table holding them (a partition, the default
    /// partition, a shard); reads from DATABASE_READ_URL when it is set.
    #[command(after_help = "Examples:\n  fetchreward counts\n  fetchreward counts --json")]
    Counts {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a development CA and a certificate per identity (local use only).
    #[command(after_help = "Examples:\n  fetchreward dev-certs --out target/dev/certs
  fetchreward dev-certs --out /tmp/certs --names vault,writer,ingestor
  fetchreward dev-certs --out target/dev/certs --person alice --role privacy-officer")]
    DevCerts {
        /// Directory to write ca.pem, NAME.pem and NAME.key into.
        #[arg(long)]
        out: PathBuf,
        /// Identities (NAME), each certified as spiffe://fetchreward/NAME.
        #[arg(long, value_delimiter = ',', default_value = "vault,writer,ingestor,reader,admin")]
        names: Vec<String>,
        /// Instead, a short-lived personal identity, spiffe://fetchreward/person/PERSON, signed
        /// by the CA already in --out (person-PERSON.pem and .key).
        #[arg(long, conflicts_with = "names")]
        person: Option<String>,
        /// The roles to grant the person (printed as the VAULT_GRANTS entry to add).
        #[arg(long, requires = "person", value_delimiter = ',')]
        role: Vec<String>,
        /// How long the personal certificate is valid, in hours.
        #[arg(long, requires = "person", default_value_t = 8)]
        hours: u32,
    },
}

#[derive(Args)]
struct SeedArgs {
    /// The project's deterministic sample: 100 messages with duplicates and 5 malformed ones.
    #[arg(long, conflicts_with_all = ["count", "file"])]
    sample: bool,
    /// This many synthetic, valid messages.
    #[arg(long, conflicts_with = "file")]
    count: Option<usize>,
    /// Seed of the synthetic generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct ip and device_id values for --count (default: one per message).
    #[arg(long)]
    distinct: Option<usize>,
    /// A JSON array or JSON lines file, gzip accepted (e.g. sample_data.json.gz).
    #[arg(long)]
    file: Option<PathBuf>,
    /// The queue to send to.
    #[arg(long, env = "QUEUE_URL")]
    queue_url: String,
}

#[derive(Subcommand)]
enum HealthCommand {
    /// Ask the gRPC health service of the vault or the writer.
    #[command(
        after_help = "Examples:\n  fetchreward health grpc http://127.0.0.1:50051 --service fetchreward.vault.v1.VaultService
  fetchreward health grpc https://fetchreward-vault:50051 --tls-ca /etc/fetchreward/tls/ca.crt"
    )]
    Grpc {
        /// The service's gRPC endpoint.
        endpoint: String,
        /// The gRPC service to ask about (empty: the server as a whole).
        #[arg(long, default_value = "")]
        service: String,
        /// CA that verifies an https:// endpoint (health needs no client certificate).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Ask an operations port (the ingestor has no gRPC server).
    #[command(after_help = "Examples:\n  fetchreward health http http://127.0.0.1:9103/readyz")]
    Http {
        /// The URL, e.g. http://127.0.0.1:9103/readyz.
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Print the visible and in-flight message counts.
    #[command(after_help = "Examples:\n  fetchreward queue status
  fetchreward queue status --queue-url \"$DLQ_URL\"")]
    Status {
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
    },
    /// Delete every message of a queue (PurgeQueue).
    #[command(after_help = "Examples:\n  fetchreward queue purge --queue-url \"$QUEUE_URL\"")]
    Purge {
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
    },
    /// Wait until the queue holds no message, visible or in flight.
    #[command(after_help = "Examples:\n  fetchreward queue wait-empty --timeout 300")]
    WaitEmpty {
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Show dead-lettered messages with who refused them and why, without consuming them; the
    /// bodies are opened with the DLQ key and shown with `ip` and `device_id` redacted.
    #[command(
        after_help = "Examples:\n  fetchreward dlq list --max 50\n  fetchreward dlq list --reveal"
    )]
    List {
        #[arg(long, env = "DLQ_URL")]
        dlq_url: String,
        /// At most this many messages.
        #[arg(long, default_value_t = 20)]
        max: usize,
        /// Show the bodies whole, personal data included (logged with your identity).
        #[arg(long)]
        reveal: bool,
    },
    /// Show one dead-lettered message whole: its refusal, origin, attributes and body (redacted
    /// unless revealed).
    #[command(
        after_help = "Examples:\n  fetchreward dlq show 5b6f0c8e-…\n  fetchreward dlq show 5b6f0c8e-… --reveal"
    )]
    Show {
        /// Its id in the DLQ, or the id it was first sent with.
        id: String,
        #[arg(long, env = "DLQ_URL")]
        dlq_url: String,
        /// Show the body whole, personal data included (logged with your identity).
        #[arg(long)]
        reveal: bool,
    },
    /// Send dead-lettered messages back to the source queue (after the cause is fixed).
    ///
    /// Each keeps the message id it was first sent with, so redriving twice (an interrupted run,
    /// say) still gives one row.
    #[command(after_help = "Examples:\n  fetchreward dlq redrive --dry-run
  fetchreward dlq redrive --reason-code db_constraint_violation
  fetchreward dlq redrive --reason-code redrive_policy
  fetchreward dlq redrive --message-id 5b6f0c8e-… --message-id 9a1e…")]
    Redrive {
        #[arg(long, env = "DLQ_URL")]
        dlq_url: String,
        /// The queue to send them to.
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        /// Only messages refused with this code (repeatable); `redrive_policy` names those the
        /// redrive policy moved without a reason.
        #[arg(long = "reason-code")]
        reason_codes: Vec<String>,
        /// Only this message, by DLQ id or first id (repeatable).
        #[arg(long = "message-id")]
        message_ids: Vec<String>,
        /// Count what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete every message of the dead-letter queue.
    #[command(after_help = "Examples:\n  fetchreward dlq purge --yes")]
    Purge {
        #[arg(long, env = "DLQ_URL")]
        dlq_url: String,
        /// Confirms that the messages are to be deleted for good.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ShardsCommand {
    /// Make DATABASE_URL the coordinator of the shards named: the writer's migrations run on
    /// each, user_logins becomes hash-partitioned by message_id with a postgres_fdw foreign
    /// partition per shard, and its rows move to their shards (runs as the table's owner).
    #[command(
        after_help = "Examples:\n  fetchreward shards init --shard postgres://fetchreward@shard-0:5432/fetchreward \\\n    --shard postgres://fetchreward@shard-1:5432/fetchreward"
    )]
    Init {
        /// A shard's postgres:// URL; the order fixes which hash remainder each holds.
        #[arg(long = "shard", required = true)]
        shards: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Export every monthly partition older than the cutoff to S3 (Parquet, zstd, with a
    /// manifest), verify it there, then detach and drop it. An interrupted run is resumed by
    /// running it again.
    #[command(
        after_help = "Examples:\n  fetchreward archive run --older-than 13mo --to s3://fetchreward-archive/prod\n  fetchreward archive run --older-than 2y --keep-detached --dry-run"
    )]
    Run {
        /// Archive the months that ended before this age: 13mo, 2y or 400d.
        #[arg(long, default_value = "13mo")]
        older_than: OlderThan,
        /// Where: s3://bucket/prefix.
        #[arg(long, env = "ARCHIVE_URL")]
        to: ArchiveTarget,
        /// Detach the partitions but keep their tables (drop them later by hand).
        #[arg(long)]
        keep_detached: bool,
        /// Only print which months would be archived.
        #[arg(long)]
        dry_run: bool,
    },
    /// The archived months, with whether the database still holds them (reads from
    /// DATABASE_READ_URL when it is set).
    #[command(
        after_help = "Examples:\n  fetchreward archive list --from s3://fetchreward-archive/prod"
    )]
    List {
        /// Where: s3://bucket/prefix.
        #[arg(long, env = "ARCHIVE_URL")]
        from: ArchiveTarget,
        /// One JSON manifest per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-create a month's partition and insert its archived rows (rows already present are
    /// kept; run it again after an interruption).
    #[command(
        after_help = "Examples:\n  fetchreward archive restore 2025-11 --from s3://fetchreward-archive/prod"
    )]
    Restore {
        /// The month, YYYY-MM.
        month: Month,
        /// Where: s3://bucket/prefix.
        #[arg(long, env = "ARCHIVE_URL")]
        from: ArchiveTarget,
    },
}

#[derive(Args)]
struct SubjectArgs {
    /// The subject's address.
    #[arg(long, conflicts_with = "device_id", required_unless_present = "device_id")]
    ip: Option<String>,
    /// The subject's device id.
    #[arg(long)]
    device_id: Option<String>,
    /// Why: a purpose code when the vault has them (e.g. dsar).
    #[arg(long)]
    purpose: String,
    /// Free text beside the code, e.g. the request's reference (audited).
    #[arg(long, default_value = "")]
    note: String,
}

impl SubjectArgs {
    fn value(&self) -> subject::SubjectValue {
        match (&self.ip, &self.device_id) {
            (Some(ip), _) => subject::SubjectValue::Ip(ip.clone()),
            (None, Some(device)) => subject::SubjectValue::DeviceId(device.clone()),
            (None, None) => unreachable!("clap requires one"),
        }
    }

    fn why(&self) -> subject::Why {
        subject::Why { purpose: self.purpose.clone(), note: self.note.clone() }
    }
}

#[derive(Subcommand)]
enum SubjectCommand {
    /// The value's tokens and how many rows of user_logins carry them, by month (Lookup:
    /// audited, rate limited, stores nothing).
    #[command(
        after_help = "Examples:\n  fetchreward subject find --ip 66.194.53.215 --purpose dsar --note DSAR-42"
    )]
    Find {
        #[command(flatten)]
        subject: SubjectArgs,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// The subject's rows with their values revealed: a data-subject access answer (one
    /// Detokenize call, audited, counted against the daily limit).
    #[command(
        after_help = "Examples:\n  fetchreward subject export --ip 66.194.53.215 --purpose dsar --note DSAR-42 --format csv --out dsar-42.csv"
    )]
    Export {
        #[command(flatten)]
        subject: SubjectArgs,
        /// json (one object per line) or csv.
        #[arg(long, value_enum, default_value = "json")]
        format: subject::ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Find the value's tokens and Forget them: prints the erasure receipt.
    #[command(
        after_help = "Examples:\n  fetchreward subject forget --device-id 593-47-5928 --purpose dsar --note \"erasure DSAR-43\""
    )]
    Forget {
        #[command(flatten)]
        subject: SubjectArgs,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// Add values to a caller's limit for a purpose, for the rest of the UTC day.
    Lift {
        /// The caller, e.g. spiffe://fetchreward/person/alice.
        #[arg(long)]
        caller: String,
        /// The purpose code whose limit is raised (none when the vault has no codes).
        #[arg(long, default_value = "")]
        quota_purpose: String,
        /// How many more values.
        #[arg(long)]
        values: u32,
        /// Why (audited).
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

#[derive(Subcommand)]
enum DecoysCommand {
    /// Plant COUNT rows, each with a decoy address token and a decoy device token.
    Plant {
        /// How many rows, 1 to 100.
        #[arg(long, default_value_t = 5)]
        count: u32,
        /// Why (audited).
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Rows of the audit trail, oldest first, as a table or as JSON lines.
    #[command(
        after_help = "Examples:\n  fetchreward audit list --method Detokenize --outcome denied\n  fetchreward audit list --caller spiffe://fetchreward/reader --since 2026-12-01T00:00:00Z --json"
    )]
    List {
        /// Only this caller's rows (a SPIFFE id, or `anonymous`).
        #[arg(long)]
        caller: Option<String>,
        /// Only this method's rows (Detokenize, Forget, RotateKeys, Rewrap).
        #[arg(long)]
        method: Option<String>,
        /// Only rows with this outcome (allowed, denied, invalid, failed).
        #[arg(long)]
        outcome: Option<String>,
        /// Only rows written at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only rows written before this time (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Walk the hash chain; exits non-zero naming the first row where it breaks.
    #[command(after_help = "Examples:\n  fetchreward audit verify")]
    Verify {
        #[command(flatten)]
        vault: VaultArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start a new key version: new tokens (tokenization) or new ciphertexts (data) use it
    /// once it takes over, after the vault's rotation delay.
    #[command(
        after_help = "Examples:\n  fetchreward keys rotate --target data --purpose \"yearly rotation\" --vault-endpoint https://localhost:50051 \\
    --tls-ca target/dev/certs/ca.pem --tls-cert target/dev/certs/admin.pem --tls-key target/dev/certs/admin.key"
    )]
    Rotate {
        /// Which key. There is no default: a tokenization rotation gives every value a new
        /// token, so tokens from before and after it no longer match (joins and counts split).
        #[arg(long, value_enum)]
        target: Target,
        /// Why (stored in the audit trail).
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Re-encrypt stored values under the active data key until none needs an older one
    /// (after `keys rotate --target data`, before retiring the old data key version).
    #[command(
        after_help = "Examples:\n  fetchreward keys rewrap --purpose \"after the yearly rotation\" --vault-endpoint https://localhost:50051 \\
    --tls-ca target/dev/certs/ca.pem --tls-cert target/dev/certs/admin.pem --tls-key target/dev/certs/admin.key"
    )]
    Rewrap {
        /// Why (stored in the audit trail, one row per call).
        #[arg(long)]
        purpose: String,
        /// Values per call (the vault's default is 1000; at most 10000).
        #[arg(long)]
        max_rows: Option<u32>,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// The key tokens are made with: new tokens for every value.
    Tokenization,
    /// The key stored values are encrypted with: tokens do not change.
    Data,
}

#[derive(Args)]
struct VaultArgs {
    /// The vault's gRPC endpoint (https:// with client certificates).
    #[arg(long, env = "VAULT_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    vault_endpoint: String,
    /// CA that verifies the vault (with --tls-cert and --tls-key).
    #[arg(long, env = "TLS_CA_FILE", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This operator's client certificate: its spiffe:// id is who the vault authorizes.
    #[arg(long, env = "TLS_CERT_FILE", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key.
    #[arg(long, env = "TLS_KEY_FILE", requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
}

impl VaultArgs {
    async fn connect(&self) -> anyhow::Result<VaultServiceClient<Channel>> {
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                Some(TlsFiles::new(ca.clone(), cert.clone(), key.clone()))
            }
            _ => None,
        };
        vault::connect(&self.vault_endpoint, tls.as_ref()).await
    }
}

/// An activation time as UTC text, with how far ahead it is by this machine's clock.
/// A table of `rows` under `header`.
fn print_rows<const N: usize>(header: [&str; N], rows: Vec<[String; N]>) {
    let mut table = Table::new();
    table.set_header(header);
    for row in rows {
        table.add_row(row);
    }
    println!("{table}");
}

/// The erasure receipt of a Forget.
fn print_receipt(forgotten: &vault::Forgotten) {
    if forgotten.forgotten_at_unix_ms > 0 {
        println!("gone from the live table at {}", time_text(forgotten.forgotten_at_unix_ms));
    }
    let generations: Vec<String> = forgotten.generations.iter().map(|v| format!("v{v}")).collect();
    if forgotten.final_by_unix_ms > 0 {
        println!(
            "final erasure by {} (data key generation {})",
            time_text(forgotten.final_by_unix_ms),
            generations.join(", ")
        );
    }
    println!("{}", forgotten.erasure);
}

fn activation_text(unix_ms: i64) -> String {
    let Some(at) = chrono::DateTime::from_timestamp_millis(unix_ms) else {
        return format!("{unix_ms} ms after the Unix epoch");
    };
    let text = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ahead = (at - chrono::Utc::now()).num_seconds();
    if ahead > 0 { format!("{text} (in about {ahead} s)") } else { format!("{text} (now)") }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fetchreward: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The body of `letter` as the operator asked: redacted, or whole after a log line that says
/// who revealed which message (KMS's own log, CloudTrail, records the Decrypt too).
async fn shown_body(
    aws: &aws_config::SdkConfig,
    opener: &fetchreward_dlq::Opener,
    letter: &dlq::DeadLetter,
    reveal: bool,
) -> anyhow::Result<String> {
    if !reveal {
        return Ok(letter.redacted(opener).await);
    }
    eprintln!("{}", reveal_audit_line(aws, letter).await);
    letter
        .open(opener)
        .await
        .with_context(|| format!("message {} does not open", letter.message_id))
}

/// The log line of a reveal: the operator (OS user, host, AWS access key id), the message.
async fn reveal_audit_line(aws: &aws_config::SdkConfig, letter: &dlq::DeadLetter) -> String {
    use aws_sdk_sqs::config::ProvideCredentials as _;
    let access_key = match aws.credentials_provider() {
        Some(provider) => provider
            .provide_credentials()
            .await
            .map(|credentials| credentials.access_key_id().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned()),
        None => "none".to_owned(),
    };
    let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    serde_json::json!({
        "audit": "dlq_reveal",
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "operator": operator,
        "host": host.trim(),
        "aws_access_key_id": access_key,
        "dlq_message_id": letter.message_id,
        "source_message_id": letter.source_message_id,
        "sealed": letter.is_sealed(),
    })
    .to_string()
}

/// An SQS client with the standard AWS settings (see [`aws`]).
async fn sqs() -> anyhow::Result<aws_sdk_sqs::Client> {
    Ok(aws_sdk_sqs::Client::new(&aws().await?))
}

/// The standard AWS settings, or an error naming the ones missing (rather than the SDK's
/// error after it has asked the instance metadata service in vain).
async fn aws() -> anyhow::Result<aws_config::SdkConfig> {
    use aws_sdk_sqs::config::ProvideCredentials as _;
    const LOCAL: &str = "for the local stack: eval \"$(make -s env)\"";
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    if config.region().is_none() {
        anyhow::bail!("no AWS region: set AWS_REGION ({LOCAL})");
    }
    let no_credentials = "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                          or AWS_PROFILE";
    let provider =
        config.credentials_provider().with_context(|| format!("{no_credentials} ({LOCAL})"))?;
    match tokio::time::timeout(Duration::from_secs(5), provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(config),
        Ok(Err(err)) => Err(anyhow::anyhow!("{no_credentials} ({LOCAL}); the SDK said: {err}")),
        Err(_) => Err(anyhow::anyhow!("{no_credentials} ({LOCAL}); none found within 5 s")),
    }
}

async fn run_archive(command: ArchiveCommand) -> anyhow::Result<()> {
    let s3 = archive::s3_client(&aws().await?);
    match command {
        ArchiveCommand::Run { older_than, to, keep_detached, dry_run } => {
            let cutoff = older_than.cutoff(chrono::Utc::now().date_naive());
            let pool = database::connect(database::Access::Write).await?;
            let db = postgres::client(&pool).await?;
            if dry_run {
                let due = fetchreward_archive::due(&db, cutoff).await?;
                println!("{} month(s) end before {cutoff} and would go to {to}", due.len());
                for partition in due {
                    println!("  {} ({})", partition.month, partition.name);
                }
                return Ok(());
            }
            let archiver = fetchreward_archive::Archiver::new(&db, &s3, &to, true);
            let done = archiver.run(cutoff, keep_detached).await?;
            archive::print_run(&done, cutoff, &to);
        }
        ArchiveCommand::List { from, json } => {
            let pool = database::connect(database::Access::Read).await?;
            let db = postgres::client(&pool).await?;
            let archiver = fetchreward_archive::Archiver::new(&db, &s3, &from, false);
            archive::print_list(&archiver.list(&db).await?, json)?;
        }
        ArchiveCommand::Restore { month, from } => {
            let pool = database::connect(database::Access::Write).await?;
            let db = postgres::client(&pool).await?;
            let archiver = fetchreward_archive::Archiver::new(&db, &s3, &from, true);
            let restored = archiver.restore(month).await?;
            println!(
                "restored {}: {} row(s) archived, {} inserted, {} already present",
                restored.month,
                restored.rows,
                restored.inserted,
                restored.rows - restored.inserted.min(restored.rows)
            );
        }
    }
    Ok(())
}

async fn run_subject(command: SubjectCommand) -> anyhow::Result<()> {
    match command {
        SubjectCommand::Find { subject: args, vault } => {
            let mut client = vault.connect().await?;
            let value = args.value();
            let found = subject::lookup(&mut client, &value, &args.why()).await?;
            let pool = database::connect(database::Access::Read).await?;
            let db = postgres::client(&pool).await?;
            let months = subject::rows_by_month(&db, &value, &found.tokens).await?;
            println!("token(s), newest key version first: {}", found.tokens.join(", "));
            println!(
                "the vault {} an original under them; lookup audit id {}",
                if found.stored { "stores" } else { "stores no" },
                found.audit_id
            );
            let total: i64 = months.values().sum();
            print_rows(
                ["month", "rows"],
                months.into_iter().map(|(month, rows)| [month, rows.to_string()]).collect(),
            );
            println!("{total} row(s) in user_logins");
        }
        SubjectCommand::Export { subject: args, format, out, vault } => {
            let mut client = vault.connect().await?;
            let value = args.value();
            let why = args.why();
            let found = subject::lookup(&mut client, &value, &why).await?;
            let pool = database::connect(database::Access::Read).await?;
            let db = postgres::client(&pool).await?;
            let (rows, audit_id) =
                subject::export(&mut client, &db, &value, &found.tokens, &why).await?;
            match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    subject::write_rows(&rows, format, std::io::BufWriter::new(file))?;
                }
                None => subject::write_rows(&rows, format, std::io::stdout().lock())?,
            }
            eprintln!(
                "{} row(s) exported; lookup audit id {}, detokenize audit id {audit_id}",
                rows.len(),
                found.audit_id
            );
        }
        SubjectCommand::Forget { subject: args, vault } => {
            let mut client = vault.connect().await?;
            let why = args.why();
            let found = subject::lookup(&mut client, &args.value(), &why).await?;
            let purpose = if why.note.is_empty() {
                why.purpose.clone()
            } else {
                format!("{}: {}", why.purpose, why.note)
            };
            let forgotten = vault::forget(&mut client, found.tokens, purpose).await?;
            print_rows(["token", "status"], forgotten.rows.clone());
            println!("lookup audit id {}, forget audit id {}", found.audit_id, forgotten.audit_id);
            print_receipt(&forgotten);
        }
    }
    Ok(())
}

async fn run_audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List { caller, method, outcome, since, until, max, json, vault } => {
            let filter = fetchreward_proto::vault::v1::ListAuditRequest {
                caller: caller.unwrap_or_default(),
                method: method.unwrap_or_default(),
                outcome: outcome.unwrap_or_default(),
                since_unix_ms: since.map_or(0, |at| at.timestamp_millis()),
                until_unix_ms: until.map_or(0, |at| at.timestamp_millis()),
                ..Default::default()
            };
            let mut client = vault.connect().await?;
            let rows = vault::list_audit(&mut client, filter, max).await?;
            let at = |row: &fetchreward_proto::vault::v1::AuditRow| {
                chrono::DateTime::from_timestamp_micros(row.at_unix_us).map_or_else(
                    || row.at_unix_us.to_string(),
                    |at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                )
            };
            if json {
                for row in &rows {
                    let line = serde_json::json!({
                        "id": row.id, "at": at(row), "caller": row.caller, "method": row.method,
                        "purpose": row.purpose, "token_count": row.token_count,
                        "outcome": row.outcome, "found": row.found, "not_found": row.not_found,
                        "forgotten": row.forgotten, "detail": row.detail, "chained": row.chained,
                    });
                    println!("{line}");
                }
                return Ok(());
            }
            let mut table = Table::new();
            table.set_header([
                "id", "at", "caller", "method", "purpose", "tokens", "outcome", "detail",
            ]);
            for row in &rows {
                table.add_row([
                    row.id.to_string(),
                    at(row),
                    row.caller.clone(),
                    row.method.clone(),
                    row.purpose.clone(),
                    row.token_count.to_string(),
                    row.outcome.clone(),
                    row.detail.clone(),
                ]);
            }
            println!("{table}");
            println!("{} row(s)", rows.len());
        }
        AuditCommand::Verify { vault } => {
            let mut client = vault.connect().await?;
            let verified = vault::verify_audit(&mut client).await?;
            if !verified.intact {
                anyhow::bail!(
                    "the audit trail is broken at row {}: {} ({} row(s) checked before it)",
                    verified.broken_id,
                    verified.problem,
                    verified.rows_checked
                );
            }
            println!(
                "the audit trail holds: {} chained row(s) verified, {} row(s) from before the chain",
                verified.rows_checked, verified.unchained
            );
        }
    }
    Ok(())
}

async fn run_dlq(command: DlqCommand) -> anyhow::Result<()> {
    let aws = aws().await?;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let opener = fetchreward_dlq::Opener::new(aws_sdk_kms::Client::new(&aws));
    match command {
        DlqCommand::List { dlq_url, max, reveal } => {
            let letters = dlq::list(&sqs, &dlq_url, max).await?;
            let mut table = Table::new();
            table.set_header([
                "dlq message_id",
                "first message_id",
                "refused by",
                "code",
                "reason",
                "body",
            ]);
            for letter in &letters {
                let body = shown_body(&aws, &opener, letter, reveal).await?;
                table.add_row([
                    letter.message_id.clone(),
                    letter.source_message_id.clone(),
                    letter.refusal.as_ref().map_or("redrive policy", |r| &r.refused_by).to_owned(),
                    letter.code().to_owned(),
                    letter.reason(),
                    body,
                ]);
            }
            println!("{table}");
            println!("{} message(s); `fetchreward dlq show ID` shows one whole", letters.len());
            let unsealed = letters.iter().filter(|letter| !letter.is_sealed()).count();
            if unsealed > 0 {
                println!(
                    "{unsealed} message(s) UNSEALED: the redrive policy moved them without the \
                     ingestor, so their bodies are raw; redrive or purge them soon"
                );
            }
        }
        DlqCommand::Show { id, dlq_url, reveal } => {
            let Some(letter) = dlq::show(&sqs, &dlq_url, &id).await? else {
                anyhow::bail!("no message {id} in {dlq_url}");
            };
            let refused_by =
                letter.refusal.as_ref().map_or("the redrive policy", |r| &r.refused_by);
            println!("dlq message_id     {}", letter.message_id);
            println!("first message_id   {}", letter.source_message_id);
            println!("first sent at      {}", time_text(letter.source_sent_timestamp_ms));
            println!("refused by         {refused_by}");
            println!("code               {}", letter.code());
            println!("reason             {}", letter.reason());
            println!("receives in dlq    {}", letter.receive_count);
            let mut names: Vec<&String> = letter.producer_attributes.keys().collect();
            names.sort();
            for name in names {
                let value = &letter.producer_attributes[name];
                let shown = value.string_value.as_deref().unwrap_or("(binary)");
                println!("attribute          {name} ({}) = {shown}", value.data_type);
            }
            let state = if letter.is_sealed() { "sealed" } else { "UNSEALED" };
            let how = if reveal { "revealed" } else { "redacted" };
            println!("body ({state}, {how}):");
            println!("{}", shown_body(&aws, &opener, &letter, reveal).await?);
        }
        DlqCommand::Redrive { dlq_url, queue_url, reason_codes, message_ids, dry_run } => {
            let filter = dlq::RedriveFilter { codes: reason_codes, message_ids };
            let (visible, _) = queue::depth(&sqs, &dlq_url).await?;
            let bar = indicatif::ProgressBar::new(visible);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} looked at, {msg}")
                    .expect("a valid template"),
            );
            let verb = if dry_run { "would move" } else { "moved" };
            let report =
                dlq::redrive(&sqs, &opener, &dlq_url, &queue_url, &filter, dry_run, |so_far| {
                    bar.set_length(bar.length().unwrap_or(0).max(so_far.seen as u64));
                    bar.set_position(so_far.seen as u64);
                    let count = if dry_run { so_far.matched } else { so_far.moved };
                    bar.set_message(format!("{count} {verb}"));
                })
                .await;
            bar.finish_and_clear();
            let report = report?;
            if dry_run {
                println!(
                    "dry run: {} of {} message(s) would move to {queue_url}; nothing moved",
                    report.matched, report.seen
                );
            } else {
                println!(
                    "moved {} of {} message(s) to {queue_url}; the others stay in the DLQ",
                    report.moved, report.seen
                );
            }
        }
        DlqCommand::Purge { dlq_url, yes } => {
            if !yes {
                anyhow::bail!(
                    "purging deletes every message of {dlq_url} for good: add --yes to confirm"
                );
            }
            let count = dlq::purge(&sqs, &dlq_url).await?;
            println!("purged {dlq_url} ({count} message(s))");
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch as UTC text.
fn time_text(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms).map_or_else(
        || format!("{unix_ms} ms after the Unix epoch"),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Seed(args) => {
            let bodies = if let Some(path) = &args.file {
                sample::from_file(path)?
            } else if let Some(count) = args.count {
                let distinct = args.distinct.unwrap_or(count).max(1);
                let shape = sample::Shape { distinct_ips: distinct, distinct_devices: distinct };
                sample::synthetic(count, args.seed, shape)
            } else {
                sample::project_sample()
            };
            let sent = queue::seed(&sqs().await?, &args.queue_url, bodies).await?;
            println!("sent {sent} messages");
        }
        Command::Queue { command: QueueCommand::Status { queue_url } } => {
            let (visible, in_flight) = queue::depth(&sqs().await?, &queue_url).await?;
            println!("visible {visible}, in flight {in_flight}");
        }
        Command::Queue { command: QueueCommand::Purge { queue_url } } => {
            sqs()
                .await?
                .purge_queue()
                .queue_url(&queue_url)
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from)
                .context("PurgeQueue failed")?;
            println!("purged {queue_url}");
        }
        Command::Queue { command: QueueCommand::WaitEmpty { queue_url, timeout } } => {
            let waited =
                queue::wait_empty(&sqs().await?, &queue_url, Duration::from_secs(timeout)).await?;
            println!("queue empty after {:.1} s", waited.as_secs_f64());
        }
        Command::Dlq { command } => run_dlq(command).await?,
        Command::Audit { command } => run_audit(command).await?,
        Command::Detokenize { tokens, purpose, note, masked, vault } => {
            let mut client = vault.connect().await?;
            let reveal = if masked { vault::Reveal::Masked } else { vault::Reveal::Full };
            let request = DetokenizeRequest { tokens, purpose, note };
            let (rows, audit_id) = vault::detokenize(&mut client, request, reveal).await?;
            print_rows(["token", "status", "value"], rows);
            println!("audit id {audit_id}");
        }
        Command::Subject { command } => run_subject(command).await?,
        Command::Quota {
            command: QuotaCommand::Lift { caller, quota_purpose, values, purpose, vault },
        } => {
            let mut client = vault.connect().await?;
            let lifted = client
                .lift_quota(LiftQuotaRequest {
                    caller: caller.clone(),
                    quota_purpose,
                    values,
                    purpose,
                })
                .await
                .map_err(vault::explain)?
                .into_inner();
            println!(
                "{caller} may reveal {} value(s) today ({} used); audit id {}",
                lifted.limit, lifted.used, lifted.audit_id
            );
        }
        Command::Decoys { command: DecoysCommand::Plant { count, purpose, vault } } => {
            let mut client = vault.connect().await?;
            let pool = database::connect(database::Access::Write).await?;
            let db = postgres::client(&pool).await?;
            let (tokens, audit_ids) =
                subject::plant_decoys(&mut client, &db, count, &purpose).await?;
            println!(
                "planted {count} decoy row(s) in user_logins with {} decoy token(s); audit ids {} and {}",
                tokens.len(),
                audit_ids[0],
                audit_ids[1]
            );
            println!("revealing any of them is refused, audited as a decoy hit, and alerts");
        }
        Command::Forget { tokens, purpose, vault } => {
            let mut client = vault.connect().await?;
            let forgotten = vault::forget(&mut client, tokens, purpose).await?;
            print_rows(["token", "status"], forgotten.rows.clone());
            println!("audit id {}", forgotten.audit_id);
            print_receipt(&forgotten);
        }
        Command::Restore { tokens, purpose, vault } => {
            let mut client = vault.connect().await?;
            let (rows, audit_id) = vault::restore(&mut client, tokens, purpose).await?;
            print_rows(["token", "outcome"], rows);
            println!("audit id {audit_id}");
        }
        Command::Health { command: HealthCommand::Grpc { endpoint, service, tls_ca, timeout } } => {
            health::grpc(&endpoint, &service, tls_ca.as_deref(), Duration::from_secs(timeout))
                .await?;
            println!("{endpoint}: SERVING");
        }
        Command::Health { command: HealthCommand::Http { url, timeout } } => {
            health::http(&url, Duration::from_secs(timeout)).await?;
            println!("{url}: ready");
        }
        Command::Archive { command } => run_archive(command).await?,
        Command::Shards { command: ShardsCommand::Init { shards } } => {
            let shards = shards
                .iter()
                .enumerate()
                .map(|(index, url)| {
                    Shard::from_url(url).map_err(|err| anyhow::anyhow!("--shard {index}: {err}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let pool = database::connect(database::Access::Write).await?;
            let mut db = postgres::client(&pool).await?;
            let moved = fetchreward_writer::shards::init(&mut db, &shards).await?;
            println!(
                "user_logins is spread over {} shard(s); {moved} row(s) moved to them",
                shards.len()
            );
        }
        Command::Counts { json } => {
            let pool = database::connect(database::Access::Read).await?;
            let db = postgres::client(&pool).await?;
            archive::print_counts(&fetchreward_archive::monthly_counts(&db).await?, json);
        }
        Command::DevCerts { out, person: Some(person), role, hours, .. } => {
            let ca = fetchreward_devpki::DevCa::load(&out).with_context(|| {
                format!(
                    "no development CA in {} (run `fetchreward dev-certs --out {}` first)",
                    out.display(),
                    out.display()
                )
            })?;
            let id = ca
                .write_person(&out, &person, hours)
                .with_context(|| format!("cannot issue a certificate for {person}"))?;
            println!(
                "wrote person-{person}.pem and person-{person}.key into {} for {id}, valid {hours} h",
                out.display()
            );
            if !role.is_empty() {
                println!(
                    "grant the roles in the vault's settings: VAULT_GRANTS=\"{id}={}\"",
                    role.join(",")
                );
            }
        }
        Command::DevCerts { out, names, person: None, .. } => {
            let ca = fetchreward_devpki::DevCa::new("Fetchreward development CA")
                .context("cannot create the CA")?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            ca.write_all(&out, &names)
                .with_context(|| format!("cannot write certificates into {}", out.display()))?;
            println!("wrote ca.pem and {} certificate(s) into {}", names.len(), out.display());
        }
        Command::Keys { command: KeysCommand::Rotate { target, purpose, vault } } => {
            let (key_target, name) = match target {
                Target::Tokenization => (KeyTarget::Tokenization, "tokenization"),
                Target::Data => (KeyTarget::Data, "data"),
            };
            let mut client = vault.connect().await?;
            let rotation = vault::rotate(&mut client, key_target, purpose)
                .await
                .context("key rotation failed")?;
            println!(
                "{name} key v{} takes over at {} (audit id {})",
                rotation.version,
                activation_text(rotation.activates_at_unix_ms),
                rotation.audit_id
            );
            match target {
                Target::Tokenization => println!(
                    "tokens made from then on do not match earlier tokens of the same values: \
                     tell analysts the boundary (docs/vault.md, Key rotation)"
                ),
                Target::Data => println!(
                    "once it has taken over, run `fetchreward keys rewrap` to re-encrypt the \
                     stored values"
                ),
            }
        }
        Command::Keys { command: KeysCommand::Rewrap { purpose, max_rows, vault } } => {
            let mut client = vault.connect().await?;
            let total =
                vault::rewrap_all(&mut client, purpose, max_rows.unwrap_or(0), |step, total| {
                    println!(
                        "rewrapped {} values under data key v{} ({total} so far), {} remaining \
                         (audit id {})",
                        step.rewrapped, step.data_key_version, step.remaining, step.audit_id
                    );
                    for token in &step.unreadable {
                        println!(
                            "unreadable: {token} does not open under its data key (marked, skipped)"
                        );
                    }
                })
                .await
                .context("rewrap failed")?;
            println!("done: {total} values rewrapped; no stored value needs an older data key");
        }
    }
    Ok(())
}
