//! `fetchreward-stress soak`: a long load through one set of the release binaries, watching
//! each service's resident memory for growth that does not stop (a leak). A producer keeps
//! the source queue topped up (its visible depth bounded, so the emulator's memory stays
//! flat) while the pipeline drains it; every second each service's RSS is sampled. The run
//! passes when every service's median RSS over the last quarter of the samples is within 10%
//! of its median over the first quarter, and every message became one row. See docs/chaos.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fetchreward_cli::sample;
use fetchreward_stress::process;
use fetchreward_stress::services::{ServiceSet, SetConfig};
use fetchreward_testkit::Stack;
use serde::Serialize;

use crate::report::{self, Report, secs};
use crate::{queues, rows};

/// Seed of the messages.
const SEED: u64 = 7;
/// Most bodies generated up front. The producer cycles through them, each time with a new
/// user_id, so the stress process's memory does not grow with SOAK_MESSAGES.
const BASE_BODIES: usize = 100_000;
/// The bodies generated up front are this share of the messages (1/20), so that every ip and
/// device_id value of the run has been seen once the first 5% are in: the vault's known-token
/// cache is then as full as it gets, well before the middle of the first quarter, whose
/// median RSS is the reference.
const BASE_SHARE: usize = 20;
/// Messages the producer sends between two looks at the queue's depth.
const CHUNK: usize = 2_000;
/// How often each service's RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// `fetchreward-stress soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Messages through the pipeline.
    #[arg(long, env = "SOAK_MESSAGES", default_value_t = 1_000_000)]
    messages: usize,
    /// Distinct ip values, and distinct device_id values, the messages draw from (those drawn
    /// are reported). Bounded so that the vault's known-token cache (250,000 tokens) fills in
    /// the first quarter: growth after that is what the soak looks for.
    #[arg(long, env = "SOAK_DISTINCT", default_value_t = 50_000)]
    distinct: usize,
    /// Most visible messages the producer lets the source queue hold.
    #[arg(long, default_value_t = 50_000)]
    max_visible: u64,
    /// Pass when each service's last-quarter median RSS is at most this many times its
    /// first-quarter median.
    #[arg(long, default_value_t = 1.10)]
    max_growth: f64,
    /// Most seconds the whole run may take.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    /// Where soak.md, soak.json and the services' logs (soak/) go.
    #[arg(long, default_value_os_t = process::target_dir().join("stress"))]
    out_dir: PathBuf,
    /// Keep the run's database and queues (by default only a failed run's are kept).
    #[arg(long)]
    keep: bool,
}

/// One service's memory over the run.
#[derive(Debug, Serialize)]
struct Memory {
    service: String,
    samples: usize,
    first_quarter_median_mib: f64,
    last_quarter_median_mib: f64,
    ratio: f64,
    peak_mib: f64,
    passed: bool,
}

/// Runs the soak, prints and writes the report; `Ok(false)` when a check failed.
pub async fn run(args: SoakArgs) -> anyhow::Result<bool> {
    for name in ["fetchreward-vault", "fetchreward-writer", "fetchreward-ingestor"] {
        process::binary(name)?;
    }
    if args.messages == 0 || args.distinct == 0 {
        bail!("SOAK_MESSAGES and SOAK_DISTINCT must be at least 1");
    }
    if args.max_visible < CHUNK as u64 {
        bail!("--max-visible must be at least {CHUNK}");
    }
    let stack = Stack::from_env();
    let sqs = stack.sqs();
    let base = sample::synthetic(
        (args.messages / BASE_SHARE).clamp(1, BASE_BODIES),
        SEED,
        sample::Shape { distinct_ips: args.distinct, distinct_devices: args.distinct },
    );
    let (distinct_ips, distinct_devices) = distinct_values(&base);
    let log_dir = args.out_dir.join("soak");
    let mut set = ServiceSet::start(&stack, SetConfig::production_like(log_dir.clone())).await?;
    let database = set.database.clone();
    let queue_pair = set.queues.clone();
    eprintln!(
        "soak: messages={} distinct_ips={distinct_ips} distinct_device_ids={distinct_devices} max_visible={} database={}",
        args.messages, args.max_visible, database.name
    );

    set.start_ingestor(None)?;
    let started = Instant::now();
    let mut producer = Some(tokio::spawn(produce(
        sqs.clone(),
        queue_pair.queue_url.clone(),
        base,
        args.messages,
        args.max_visible,
    )));
    let names: Vec<String> = set.services().map(|s| s.name().to_owned()).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut peaks = vec![0.0_f64; names.len()];
    let mut sample_times: Vec<f64> = Vec::new();
    // The first sample a second in: at once, the ingestor would not even have started.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
    let mut empty_since: Option<(Duration, u64)> = None;
    let mut last_report = Instant::now();
    let timeout = Duration::from_secs(args.timeout_secs);
    let drain = loop {
        tick.tick().await;
        sample_times.push(started.elapsed().as_secs_f64());
        for (i, service) in set.services().enumerate() {
            samples[i].push(service.rss_mib());
            peaks[i] = peaks[i].max(service.peak_rss_mib());
        }
        for service in [&mut set.vault, &mut set.writer].into_iter().chain(set.ingestors.iter_mut())
        {
            if !service.is_running() {
                bail!(
                    "{} exited during the soak (log: {})",
                    service.name(),
                    service.log().display()
                );
            }
        }
        if producer.as_ref().is_some_and(tokio::task::JoinHandle::is_finished) {
            let handle = producer.take().expect("checked above");
            handle.await.context("the producer panicked")??;
            eprintln!("soak: every message sent after {:.1}s", started.elapsed().as_secs_f64());
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let (visible, in_flight) =
                fetchreward_cli::queue::depth(&sqs, &queue_pair.queue_url).await?;
            let rss: Vec<String> = names
                .iter()
                .zip(&samples)
                .map(|(name, series)| {
                    format!("{name}={:.0}MiB", series.last().copied().unwrap_or(0.0))
                })
                .collect();
            eprintln!(
                "soak: t={:.0}s visible={visible} in_flight={in_flight} rss {}",
                started.elapsed().as_secs_f64(),
                rss.join(" ")
            );
        }
        if producer.is_none() {
            let depth = fetchreward_cli::queue::depth(&sqs, &queue_pair.queue_url).await?;
            if depth == (0, 0) {
                let rows = rows::count(&database.url).await?;
                match empty_since {
                    Some((at, before)) if before == rows => break at,
                    _ => empty_since = Some((started.elapsed(), rows)),
                }
            } else {
                empty_since = None;
            }
        }
        if started.elapsed() > timeout {
            bail!("the soak did not finish within {timeout:?}");
        }
    };
    set.stop();

    let found = rows::read(&database.url).await?;
    let memory: Vec<Memory> = names
        .iter()
        .zip(&samples)
        .zip(&peaks)
        .map(|((name, series), peak)| memory(name, series, *peak, args.max_growth))
        .collect();
    let mut failures = Vec::new();
    if found.rows != args.messages as u64 {
        failures.push(format!("{} rows for {} messages", found.rows, args.messages));
    }
    if found.duplicates > 0 {
        failures.push(format!("{} duplicate rows", found.duplicates));
    }
    for m in memory.iter().filter(|m| !m.passed) {
        failures.push(format!(
            "{} grew to {:.2}x its first-quarter RSS (at most {:.2}x)",
            m.service, m.ratio, args.max_growth
        ));
    }
    if failures.is_empty() && !args.keep {
        rows::drop_database(&stack, &database.name).await?;
        queues::delete_queues(&sqs, [&queue_pair.queue_url, &queue_pair.dlq_url]).await?;
    } else {
        eprintln!("soak: kept database={} logs={}", database.name, log_dir.display());
    }

    let mut table = Report::new(&[
        "service",
        "samples",
        "first-quarter median RSS (MiB)",
        "last-quarter median RSS (MiB)",
        "ratio",
        "peak RSS (MiB)",
        "verdict",
    ]);
    for m in &memory {
        table.row(vec![
            m.service.clone(),
            m.samples.to_string(),
            format!("{:.1}", m.first_quarter_median_mib),
            format!("{:.1}", m.last_quarter_median_mib),
            format!("{:.3}", m.ratio),
            format!("{:.1}", m.peak_mib),
            if m.passed { "pass".into() } else { "FAIL".into() },
        ]);
    }
    let rate = args.messages as f64 / drain.as_secs_f64().max(f64::EPSILON);
    let summary = format!(
        "{} messages ({distinct_ips} distinct ip and {distinct_devices} distinct device_id values), \
         {} rows, {} duplicates, drained in {}s ({rate:.0} msgs/s), visible depth kept at most {}: {}",
        args.messages,
        found.rows,
        found.duplicates,
        secs(drain.as_secs_f64()),
        args.max_visible,
        if failures.is_empty() {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", failures.join("; "))
        }
    );
    println!("{}\n{summary}", table.terminal());
    let markdown = format!(
        "# make soak\n\nOne set of the release binaries over mutual TLS; each service's RSS (VmRSS) \
         sampled every second; pass when each last-quarter median is at most {:.2}x the \
         first-quarter one and every message is one row.\n\n{}\n{summary}\n",
        args.max_growth,
        table.markdown()
    );
    let json = serde_json::json!({
        "messages": args.messages,
        "distinct_pool": args.distinct,
        "distinct_ips": distinct_ips,
        "distinct_device_ids": distinct_devices,
        "max_visible": args.max_visible,
        "max_growth": args.max_growth,
        "rows": found.rows,
        "duplicates": found.duplicates,
        "drain_secs": drain.as_secs_f64(),
        "rate_per_sec": rate,
        "passed": failures.is_empty(),
        "failures": failures,
        "memory": memory,
        "samples": {
            "at_secs": sample_times,
            "rss_mib": names.iter().zip(&samples).map(|(n, s)| (n.clone(), s.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        },
    });
    report::write(&args.out_dir, "soak", &markdown, &json)?;
    Ok(failures.is_empty())
}

/// Sends `total` messages, cycling through `base` with a new user_id each time, while keeping
/// at most `max_visible` messages visible in the queue.
async fn produce(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    base: Vec<String>,
    total: usize,
    max_visible: u64,
) -> anyhow::Result<()> {
    let mut next = 0;
    while next < total {
        let (visible, _) = fetchreward_cli::queue::depth(&sqs, &queue_url).await?;
        if visible + CHUNK as u64 > max_visible {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let count = CHUNK.min(total - next);
        let bodies: Vec<String> =
            (next..next + count).map(|i| with_user(&base[i % base.len()], i)).collect();
        queues::send_with_ids(&sqs, &queue_url, &bodies).await?;
        next += count;
    }
    Ok(())
}

/// How many distinct ip and device_id values the bodies hold.
fn distinct_values(bodies: &[String]) -> (usize, usize) {
    let mut ips = std::collections::HashSet::new();
    let mut devices = std::collections::HashSet::new();
    for body in bodies {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else { continue };
        if let Some(ip) = value["ip"].as_str() {
            ips.insert(ip.to_owned());
        }
        if let Some(device) = value["device_id"].as_str() {
            devices.insert(device.to_owned());
        }
    }
    (ips.len(), devices.len())
}

/// `body` with its user_id replaced by one made from `index` (a UUID, as the producer's).
fn with_user(body: &str, index: usize) -> String {
    const KEY: &str = "\"user_id\":\"";
    let user = uuid::Uuid::from_u128(0x50a4_0000_0000_4000_8000_0000_0000_0000 | index as u128);
    let Some(start) = body.find(KEY).map(|at| at + KEY.len()) else {
        return body.to_owned();
    };
    // The value is a UUID: no escaped quote inside.
    let end = body[start..].find('"').map_or(body.len(), |len| start + len);
    format!("{}{user}{}", &body[..start], &body[end..])
}

fn memory(service: &str, series: &[f64], peak: f64, max_growth: f64) -> Memory {
    let quarter = (series.len() / 4).max(1).min(series.len());
    let first = median(&series[..quarter]);
    let last = median(&series[series.len() - quarter..]);
    let ratio = if first > 0.0 { last / first } else { f64::INFINITY };
    Memory {
        service: service.to_owned(),
        samples: series.len(),
        first_quarter_median_mib: first,
        last_quarter_median_mib: last,
        ratio,
        peak_mib: peak,
        passed: ratio <= max_growth,
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_id_is_replaced_and_nothing_else() {
        let body = r#"{"app_version":"2.3.0","ip":"10.0.0.1","user_id":"424cdd21-063a-43a7-b91b-7ca1a833afae"}"#;
        let changed = with_user(body, 1);
        assert_eq!(
            changed,
            r#"{"app_version":"2.3.0","ip":"10.0.0.1","user_id":"50a40000-0000-4000-8000-000000000001"}"#
        );
        assert_ne!(with_user(body, 2), changed);
    }

    #[test]
    fn medians_of_quarters() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let flat: Vec<f64> = (0..100).map(|i| 100.0 + f64::from(i % 3)).collect();
        assert!(memory("vault", &flat, 110.0, 1.1).passed);
        let growing: Vec<f64> = (0..100).map(|i| 100.0 + f64::from(i)).collect();
        let grown = memory("vault", &growing, 200.0, 1.1);
        assert!(!grown.passed && grown.ratio > 1.5, "{grown:?}");
    }
}
