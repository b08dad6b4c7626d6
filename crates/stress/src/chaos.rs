//! `fetchreward-stress chaos`: the pipeline's delivery promise under faults. Each scenario
//! seeds a fresh queue, starts the release binaries (mutual TLS), strikes once mid-load (a
//! process killed with SIGKILL, Postgres stopped in immediate mode, SQS refusing connections)
//! and checks, once the queue has drained: one row per valid message and none twice, exactly the
//! poison messages in the DLQ, each with its reason. See docs/chaos.md.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fetchreward_cli::sample;
use fetchreward_model::parse_login;
use fetchreward_stress::process::{self, Service};
use fetchreward_stress::services::{ServiceSet, SetConfig};
use fetchreward_testkit::{Stack, TcpProxy};
use serde::Serialize;

use crate::report::{self, Report, secs};
use crate::{queues, rows};

/// Seed of the valid messages: every scenario sends the same ones.
const SEED: u64 = 2024;
/// Poison messages mixed into the poison scenario.
const POISON_MESSAGES: usize = 30;
/// How long the poison scenario may take, as a multiple of the fault-free one.
const POISON_MAX_RATIO: f64 = 1.5;
/// How long a killed service stays down before it is started again.
const DOWN_AFTER_KILL: Duration = Duration::from_secs(1);
/// How long Postgres stays down.
const POSTGRES_DOWN: Duration = Duration::from_secs(2);
/// How long the SQS endpoint refuses connections.
const SQS_DOWN: Duration = Duration::from_secs(5);
/// Replicas of the ingestor in the replicas scenario.
const REPLICAS: usize = 3;

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Nothing goes wrong: the baseline of every drain time.
    FaultFree,
    /// The ingestor is killed with SIGKILL mid-load and started again.
    IngestorKill,
    /// The writer is killed with SIGKILL mid-load and started again on the same ports.
    WriterKill,
    /// The vault is killed with SIGKILL mid-load and started again on the same ports.
    VaultKill,
    /// Postgres stops in immediate mode (a crash) mid-load and starts again.
    PostgresCrash,
    /// Three ingestors consume the same queue.
    Replicas,
    /// Poison messages (NUL characters, over-long values) among the valid ones.
    Poison,
    /// The SQS endpoint refuses connections for five seconds mid-load.
    SqsOutage,
}

impl Scenario {
    const ALL: [Scenario; 8] = [
        Scenario::FaultFree,
        Scenario::IngestorKill,
        Scenario::WriterKill,
        Scenario::VaultKill,
        Scenario::PostgresCrash,
        Scenario::Replicas,
        Scenario::Poison,
        Scenario::SqsOutage,
    ];

    /// The name on the command line and in the report.
    fn name(self) -> &'static str {
        match self {
            Scenario::FaultFree => "fault-free",
            Scenario::IngestorKill => "ingestor-kill",
            Scenario::WriterKill => "writer-kill",
            Scenario::VaultKill => "vault-kill",
            Scenario::PostgresCrash => "postgres-crash",
            Scenario::Replicas => "replicas",
            Scenario::Poison => "poison",
            Scenario::SqsOutage => "sqs-outage",
        }
    }

    /// Whether it strikes mid-load (and so waits for the first rows).
    fn strikes(self) -> bool {
        !matches!(self, Scenario::FaultFree | Scenario::Replicas | Scenario::Poison)
    }
}

/// `fetchreward-stress chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Valid messages per scenario.
    #[arg(long, env = "CHAOS_MESSAGES", default_value_t = 100_000)]
    messages: usize,
    /// A scenario to run; repeat for several. Default: all. The fault-free scenario always
    /// runs, first: it is the baseline of every drain-time ratio.
    #[arg(long = "scenario", value_enum, value_name = "SCENARIO")]
    scenarios: Vec<Scenario>,
    /// When a fault strikes: the share of the valid messages already written, in percent.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..100))]
    fault_at_percent: u64,
    /// Most seconds a scenario may take to drain.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Where chaos.md, chaos.json and the services' logs (chaos/<scenario>/) go.
    #[arg(long, default_value_os_t = process::target_dir().join("stress"))]
    out_dir: PathBuf,
    /// Keep every scenario's database and queues (by default only a failed scenario's are kept).
    #[arg(long)]
    keep: bool,
}

/// What one scenario did and what the checks found.
#[derive(Debug, Serialize)]
struct Outcome {
    scenario: Scenario,
    /// Messages sent: valid plus poison.
    messages: usize,
    valid: usize,
    poison: usize,
    rows: u64,
    duplicates: u64,
    /// Valid messages without a row.
    missing_rows: usize,
    /// Rows whose message id is not one of the valid messages'.
    unexpected_rows: usize,
    /// Distinct `masked_ip` tokens, and the distinct canonical ip values sent.
    ip_tokens: u64,
    ips_sent: usize,
    /// Distinct `masked_device_id` tokens, and the distinct device ids sent.
    device_tokens: u64,
    devices_sent: usize,
    dlq_with_reason: usize,
    dlq_without_reason: usize,
    /// DLQ copies without a `fetchreward-reason-code`.
    dlq_without_code: usize,
    /// DLQ messages that were sent as valid messages.
    valid_in_dlq: usize,
    /// Poison messages with no copy in the DLQ.
    poison_missing_from_dlq: usize,
    /// DLQ messages that are neither valid nor poison messages of this run.
    unknown_in_dlq: usize,
    drain_secs: f64,
    fault_free_drain_secs: Option<f64>,
    ratio: Option<f64>,
    /// What was done mid-load, and when.
    fault: Option<String>,
    database: String,
    failures: Vec<String>,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs the chosen scenarios, prints and writes the report; `Ok(false)` when a check failed.
pub async fn run(args: ChaosArgs) -> anyhow::Result<bool> {
    let stack = Stack::from_env();
    for name in ["fetchreward-vault", "fetchreward-writer", "fetchreward-ingestor"] {
        process::binary(name)?;
    }
    require_durable_postgres(&stack).await?;
    let mut scenarios = vec![Scenario::FaultFree];
    let chosen =
        if args.scenarios.is_empty() { Scenario::ALL.to_vec() } else { args.scenarios.clone() };
    for scenario in Scenario::ALL {
        if chosen.contains(&scenario) && !scenarios.contains(&scenario) {
            scenarios.push(scenario);
        }
    }
    if args.messages == 0 {
        bail!("CHAOS_MESSAGES must be at least 1");
    }
    let distinct = (args.messages / 2).max(1);
    let valid = sample::synthetic(
        args.messages,
        SEED,
        sample::Shape { distinct_ips: distinct, distinct_devices: distinct },
    );
    let poison: Vec<String> = (1..=3).flat_map(sample::poison).take(POISON_MESSAGES).collect();
    let values = DistinctValues::of(&valid);
    let fauxqs = socket_addr(&stack.sqs_endpoint).await?;
    eprintln!(
        "chaos: {} scenarios, {} valid messages each, postgres durable, release binaries, mutual tls",
        scenarios.len(),
        args.messages
    );

    let mut outcomes: Vec<Outcome> = Vec::new();
    for scenario in scenarios {
        let bodies = if scenario == Scenario::Poison {
            mix(&valid, &poison)
        } else {
            valid.iter().map(|body| (body.clone(), false)).collect()
        };
        let outcome = run_scenario(&stack, &args, scenario, bodies, values, fauxqs).await?;
        eprintln!(
            "chaos: scenario={} rows={} duplicates={} dlq={}/{} drain={:.1}s failures={}",
            scenario.name(),
            outcome.rows,
            outcome.duplicates,
            outcome.dlq_with_reason,
            outcome.dlq_without_reason,
            outcome.drain_secs,
            outcome.failures.len()
        );
        outcomes.push(outcome);
    }

    let baseline = outcomes
        .iter()
        .find(|o| o.scenario == Scenario::FaultFree && o.passed())
        .map(|o| o.drain_secs);
    for outcome in &mut outcomes {
        outcome.fault_free_drain_secs = baseline;
        outcome.ratio = baseline.map(|base| outcome.drain_secs / base.max(f64::EPSILON));
        if outcome.scenario == Scenario::Poison {
            match outcome.ratio {
                Some(ratio) if ratio > POISON_MAX_RATIO => outcome.failures.push(format!(
                    "drain took {ratio:.2}x the fault-free drain (at most {POISON_MAX_RATIO}x)"
                )),
                Some(_) => {}
                None => outcome.failures.push("no fault-free drain time to compare with".into()),
            }
        }
    }
    print_and_write(&args, &outcomes)?;
    Ok(outcomes.iter().all(Outcome::passed))
}

/// How many distinct canonical ip and device_id values the valid messages hold: as many
/// tokens of each kind must be in the table.
#[derive(Debug, Clone, Copy)]
struct DistinctValues {
    ips: usize,
    devices: usize,
}

impl DistinctValues {
    fn of(bodies: &[String]) -> DistinctValues {
        let mut ips = HashSet::new();
        let mut devices = HashSet::new();
        for event in bodies.iter().filter_map(|body| parse_login(body.as_bytes()).ok()) {
            if let Some(ip) = &event.ip {
                ips.insert(ip.expose().to_owned());
            }
            if let Some(device) = &event.device_id {
                devices.insert(device.expose().to_owned());
            }
        }
        DistinctValues { ips: ips.len(), devices: devices.len() }
    }
}

/// Refuses to run unless every commit Postgres acknowledges is on disk: otherwise the
/// postgres-crash scenario would lose rows whose messages were deleted, and prove nothing.
async fn require_durable_postgres(stack: &Stack) -> anyhow::Result<()> {
    let settings = rows::durability(stack).await.context("is the local stack up? (make up)")?;
    let off: Vec<String> = settings
        .iter()
        .filter(|(_, value)| value != "on")
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    if !off.is_empty() {
        bail!(
            "the local Postgres is not durable ({}): a crash would lose acknowledged commits. \
             Start it in the durable mode with `FR_PG_DURABLE=1 make up` (make chaos does), \
             then run this again",
            off.join(", ")
        );
    }
    Ok(())
}

/// The valid bodies with the poison ones spread evenly among them; `true` marks poison.
fn mix(valid: &[String], poison: &[String]) -> Vec<(String, bool)> {
    let mut mixed: Vec<(String, bool)> = Vec::with_capacity(valid.len() + poison.len());
    let mut next_poison = poison.iter().enumerate().peekable();
    for (i, body) in valid.iter().enumerate() {
        // Poison j goes after valid message (j + 1) * n / (p + 1).
        while let Some((_, bad)) =
            next_poison.next_if(|(j, _)| (j + 1) * valid.len() / (poison.len() + 1) <= i)
        {
            mixed.push((bad.clone(), true));
        }
        mixed.push((body.clone(), false));
    }
    mixed.extend(next_poison.map(|(_, bad)| (bad.clone(), true)));
    mixed
}

async fn run_scenario(
    stack: &Stack,
    args: &ChaosArgs,
    scenario: Scenario,
    bodies: Vec<(String, bool)>,
    values: DistinctValues,
    fauxqs: SocketAddr,
) -> anyhow::Result<Outcome> {
    let sqs = stack.sqs();
    let log_dir = args.out_dir.join("chaos").join(scenario.name());
    eprintln!("chaos: scenario={} starting vault and writer", scenario.name());
    let mut set = ServiceSet::start(stack, SetConfig::production_like(log_dir.clone())).await?;
    let database = set.database.clone();
    let queue_pair = set.queues.clone();

    let texts: Vec<String> = bodies.iter().map(|(body, _)| body.clone()).collect();
    let seeding = Instant::now();
    let ids = queues::send_with_ids(&sqs, &queue_pair.queue_url, &texts).await?;
    drop(texts);
    let mut valid_ids = HashSet::new();
    let mut poison_ids = HashSet::new();
    for ((_, is_poison), id) in bodies.iter().zip(ids) {
        let kind = if *is_poison { &mut poison_ids } else { &mut valid_ids };
        kind.insert(id);
    }
    eprintln!(
        "chaos: scenario={} seeded messages={} in {:.1}s",
        scenario.name(),
        bodies.len(),
        seeding.elapsed().as_secs_f64()
    );

    // Every ingestor of every scenario reaches SQS through this proxy, so that the outage
    // scenario can take the endpoint away and every scenario pays the same for it.
    let proxy = TcpProxy::start(fauxqs).await;
    let endpoint = format!("http://{}", proxy.addr);
    let replicas = if scenario == Scenario::Replicas { REPLICAS } else { 1 };
    let started = Instant::now();
    for _ in 0..replicas {
        set.start_ingestor(Some(&endpoint))?;
    }
    let timeout = Duration::from_secs(args.timeout_secs);
    // A fault that cannot be injected (a service that does not come back, say) ends the run:
    // what follows would only wait for its timeout.
    let fault = if scenario.strikes() {
        let at = (valid_ids.len() as u64 * args.fault_at_percent / 100).max(1);
        let note = strike(scenario, &mut set, &proxy, &database.url, at, timeout, &log_dir)
            .await
            .with_context(|| {
            format!("scenario {}: the fault was not injected", scenario.name())
        })?;
        Some(note)
    } else {
        None
    };
    let mut failures = Vec::new();
    let drain =
        match wait_drained(&sqs, &queue_pair.queue_url, &database.url, started, timeout).await {
            Ok(drain) => drain,
            Err(err) => {
                failures.push(format!("{err:#}"));
                started.elapsed()
            }
        };
    for service in set.services() {
        if service.restarts() > 0 {
            eprintln!(
                "chaos: scenario={} {} restarts={}",
                scenario.name(),
                service.name(),
                service.restarts()
            );
        }
    }
    set.stop();
    proxy.stop();

    let found = rows::read(&database.url).await?;
    let letters = queues::dead_letters(&sqs, &queue_pair.dlq_url).await?;
    let missing_rows = valid_ids.difference(&found.message_ids).count();
    let unexpected_rows = found.message_ids.difference(&valid_ids).count();
    let source_ids: HashSet<&str> = letters.iter().map(queues::DeadLetter::source_id).collect();
    let valid_in_dlq = letters.iter().filter(|l| valid_ids.contains(l.source_id())).count();
    let unknown_in_dlq = letters
        .iter()
        .filter(|l| !valid_ids.contains(l.source_id()) && !poison_ids.contains(l.source_id()))
        .count();
    let poison_missing_from_dlq =
        poison_ids.iter().filter(|id| !source_ids.contains(id.as_str())).count();
    let dlq_with_reason = letters.iter().filter(|l| l.reason.is_some()).count();
    let dlq_without_code = letters.iter().filter(|l| l.reason_code.is_none()).count();

    let valid = valid_ids.len();
    if found.rows != valid as u64 {
        failures.push(format!("{} rows for {valid} valid messages", found.rows));
    }
    if found.duplicates > 0 {
        failures.push(format!("{} duplicate rows", found.duplicates));
    }
    if missing_rows > 0 {
        failures.push(format!("{missing_rows} valid messages have no row"));
    }
    if unexpected_rows > 0 {
        failures.push(format!("{unexpected_rows} rows of messages that are not valid ones"));
    }
    // Equal values must keep equal tokens, through restarts of the vault too.
    if found.ip_tokens != values.ips as u64 || found.device_tokens != values.devices as u64 {
        failures.push(format!(
            "{} ip and {} device_id tokens for {} and {} distinct values",
            found.ip_tokens, found.device_tokens, values.ips, values.devices
        ));
    }
    if valid_in_dlq > 0 {
        failures.push(format!("{valid_in_dlq} valid messages in the DLQ"));
    }
    if poison_missing_from_dlq > 0 {
        failures.push(format!("{poison_missing_from_dlq} poison messages not in the DLQ"));
    }
    if unknown_in_dlq > 0 {
        failures.push(format!("{unknown_in_dlq} DLQ messages of unknown origin"));
    }
    if dlq_without_code > 0 {
        failures.push(format!("{dlq_without_code} DLQ messages without a reason code"));
    }

    let kept = !failures.is_empty() || args.keep;
    if kept {
        eprintln!(
            "chaos: scenario={} kept database={} queue={} logs={}",
            scenario.name(),
            database.name,
            queue_pair.queue_url,
            log_dir.display()
        );
    } else {
        rows::drop_database(stack, &database.name).await?;
        queues::delete_queues(&sqs, [&queue_pair.queue_url, &queue_pair.dlq_url]).await?;
    }
    Ok(Outcome {
        scenario,
        messages: bodies.len(),
        valid,
        poison: poison_ids.len(),
        rows: found.rows,
        duplicates: found.duplicates,
        missing_rows,
        unexpected_rows,
        ip_tokens: found.ip_tokens,
        ips_sent: values.ips,
        device_tokens: found.device_tokens,
        devices_sent: values.devices,
        dlq_with_reason,
        dlq_without_reason: letters.len() - dlq_with_reason,
        dlq_without_code,
        valid_in_dlq,
        poison_missing_from_dlq,
        unknown_in_dlq,
        drain_secs: drain.as_secs_f64(),
        fault_free_drain_secs: None,
        ratio: None,
        fault,
        database: if kept { database.name.clone() } else { format!("{} (dropped)", database.name) },
        failures,
    })
}

/// Waits until `at` rows are in, then injects the scenario's fault; says what it did.
async fn strike(
    scenario: Scenario,
    set: &mut ServiceSet,
    proxy: &TcpProxy,
    database_url: &str,
    at: u64,
    timeout: Duration,
    log_dir: &Path,
) -> anyhow::Result<String> {
    let rows = rows::wait_for_rows(database_url, at, timeout).await?;
    eprintln!("chaos: scenario={} striking at rows={rows}", scenario.name());
    let struck = Instant::now();
    let note = match scenario {
        Scenario::IngestorKill => {
            let ingestor = set.ingestors.first_mut().context("no ingestor runs")?;
            kill_and_restart(ingestor, None).await?;
            format!(
                "ingestor: sigkill at {rows} rows, restarted {}s later",
                secs(struck.elapsed().as_secs_f64())
            )
        }
        Scenario::WriterKill => {
            let port = set.writer_ports.http;
            kill_and_restart(&mut set.writer, Some(port)).await?;
            format!(
                "writer: sigkill at {rows} rows, ready again {}s later",
                secs(struck.elapsed().as_secs_f64())
            )
        }
        Scenario::VaultKill => {
            let port = set.vault_ports.http;
            kill_and_restart(&mut set.vault, Some(port)).await?;
            format!(
                "vault: sigkill at {rows} rows, ready again {}s later",
                secs(struck.elapsed().as_secs_f64())
            )
        }
        Scenario::PostgresCrash => {
            let log = log_dir.join("postgres-crash.log");
            run_script("dev/pg-crash.sh", &log, false).await?;
            tokio::time::sleep(POSTGRES_DOWN).await;
            run_script("dev/up.sh", &log, true).await?;
            format!(
                "postgres: immediate stop at {rows} rows, accepting connections again {}s later",
                secs(struck.elapsed().as_secs_f64())
            )
        }
        Scenario::SqsOutage => {
            proxy.stop();
            tokio::time::sleep(SQS_DOWN).await;
            proxy.resume().await;
            format!("sqs: connections refused at {rows} rows for {}s", SQS_DOWN.as_secs())
        }
        Scenario::FaultFree | Scenario::Replicas | Scenario::Poison => {
            unreachable!("{} does not strike", scenario.name())
        }
    };
    eprintln!("chaos: scenario={} {note}", scenario.name());
    Ok(note)
}

/// `kill -9`, a moment down, the same binary again with the same environment; with a port,
/// waits until it is ready again.
async fn kill_and_restart(service: &mut Service, ready_port: Option<u16>) -> anyhow::Result<()> {
    service.kill()?;
    tokio::time::sleep(DOWN_AFTER_KILL).await;
    service.restart()?;
    if let Some(port) = ready_port {
        service.wait_ready(port).await?;
    }
    Ok(())
}

/// Runs a script of `dev/` (its output appended to `log`); `durable` sets FR_PG_DURABLE=1.
async fn run_script(script: &str, log: &Path, durable: bool) -> anyhow::Result<()> {
    let path = process::workspace_root().join(script);
    let log = log.to_owned();
    let shown = script.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut command = std::process::Command::new("bash");
        command.arg(&path).stdin(std::process::Stdio::null());
        command.stdout(file.try_clone()?).stderr(file);
        if durable {
            command.env("FR_PG_DURABLE", "1");
        }
        let status = command.status().with_context(|| format!("cannot run {shown}"))?;
        if !status.success() {
            bail!("{shown} failed ({status}); its output is in {}", log.display());
        }
        Ok(())
    })
    .await
    .context("the script's thread panicked")?
}

/// Waits until the source queue holds no message, visible or in flight, and the row count has
/// stopped changing; returns the time from `started` to when the queue was seen empty.
async fn wait_drained(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    database_url: &str,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    loop {
        let (visible, in_flight) = fetchreward_cli::queue::depth(sqs, queue_url).await?;
        if visible == 0 && in_flight == 0 {
            let empty_at = started.elapsed();
            if let Ok(before) = rows::count(database_url).await {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let still_empty = fetchreward_cli::queue::depth(sqs, queue_url).await? == (0, 0);
                if still_empty && rows::count(database_url).await.ok() == Some(before) {
                    return Ok(empty_at);
                }
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "did not drain within {timeout:?}: {visible} visible and {in_flight} in-flight messages left"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The socket address of an `http://host:port` endpoint.
async fn socket_addr(endpoint: &str) -> anyhow::Result<SocketAddr> {
    let authority =
        endpoint.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
    tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("cannot resolve the SQS endpoint {endpoint}"))?
        .next()
        .with_context(|| format!("the SQS endpoint {endpoint} resolves to no address"))
}

fn print_and_write(args: &ChaosArgs, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let mut table = Report::new(&[
        "scenario",
        "messages",
        "rows",
        "duplicates",
        "DLQ with reason / without",
        "valid messages in DLQ",
        "drain time (s)",
        "fault-free drain time (s)",
        "ratio",
        "verdict",
    ]);
    for outcome in outcomes {
        let verdict = if outcome.passed() {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", outcome.failures.join("; "))
        };
        table.row(vec![
            outcome.scenario.name().to_owned(),
            outcome.messages.to_string(),
            outcome.rows.to_string(),
            outcome.duplicates.to_string(),
            format!("{} / {}", outcome.dlq_with_reason, outcome.dlq_without_reason),
            outcome.valid_in_dlq.to_string(),
            secs(outcome.drain_secs),
            outcome.fault_free_drain_secs.map_or_else(|| "-".into(), secs),
            outcome.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
            verdict,
        ]);
    }
    println!("{}", table.terminal());
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let summary = format!("{passed} of {} scenarios passed", outcomes.len());
    println!("{summary}");
    let faults: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.fault.as_ref().map(|f| format!("- {}: {f}", o.scenario.name())))
        .collect();
    let markdown = format!(
        "# make chaos\n\n{} valid messages per scenario (the poison scenario adds {POISON_MESSAGES}), \
         release binaries over mutual TLS, durable Postgres; a fault strikes when {}% of the rows \
         are in.\n\n{}\n{summary}.\n\nFaults:\n\n{}\n",
        args.messages,
        args.fault_at_percent,
        table.markdown(),
        faults.join("\n")
    );
    let json = serde_json::json!({
        "messages_per_scenario": args.messages,
        "poison_messages": POISON_MESSAGES,
        "fault_at_percent": args.fault_at_percent,
        "poison_max_ratio": POISON_MAX_RATIO,
        "passed": passed == outcomes.len(),
        "scenarios": outcomes,
    });
    report::write(&args.out_dir, "chaos", &markdown, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_is_spread_evenly_and_nothing_is_lost() {
        let valid: Vec<String> = (0..310).map(|i| format!("v{i}")).collect();
        let poison: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
        let mixed = mix(&valid, &poison);
        assert_eq!(mixed.len(), 340);
        let positions: Vec<usize> =
            mixed.iter().enumerate().filter(|(_, (_, bad))| *bad).map(|(i, _)| i).collect();
        assert_eq!(positions.len(), 30);
        assert!(positions[0] >= 9 && positions[29] < 330, "{positions:?}");
        let gaps: Vec<usize> = positions.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|gap| (10..=12).contains(gap)), "{gaps:?}");
        let order: Vec<&str> =
            mixed.iter().filter(|(_, bad)| !bad).map(|(body, _)| body.as_str()).collect();
        assert_eq!(order, valid.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn few_valid_messages_still_take_every_poison_message() {
        let mixed = mix(&["v".to_owned()], &["p1".to_owned(), "p2".to_owned()]);
        assert_eq!(mixed.iter().filter(|(_, bad)| *bad).count(), 2);
    }
}
