//! Login messages for the queue: the project's own deterministic sample, synthetic messages
//! in any number, or a file (Fetch's `sample_data.json.gz`, say).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// App versions in the shapes Fetch's data has, and one that has no integer form.
const APP_VERSIONS: [&str; 8] =
    ["2.3.0", "0.2.6", "2.2.1", "0.96", "1.1", "5.5", "0.8.3", "3.7.1-beta"];
/// Locales, with `None` for a null locale as in Fetch's data (about a third of it).
const LOCALES: [Option<&str>; 9] =
    [None, None, None, Some("ID"), Some("CN"), Some("RU"), Some("FR"), Some("PH"), Some("US")];
/// Device types.
const DEVICE_TYPES: [&str; 2] = ["android", "ios"];

/// Malformed bodies the sample carries, one per rule family.
const MALFORMED: [&str; 5] = [
    r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#,
    r#"{"user_id": "9f6c4f7e-0c1e-4d4a-9b59-7a3c1f2e8d10", "ip": "300.12.7.1", "device_id": "441-19-8820"}"#,
    r#"{"user_id": "2b8e1d7a-4c3f-4e5b-8a9d-0f1e2d3c4b5a", "app_version": 2.3, "ip": "10.4.4.4"}"#,
    "login user=42 ip=10.0.0.1",
    // SQS refuses an empty body; white space is the closest a producer can send.
    "   ",
];

/// How synthetic messages are generated.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Distinct ip values to draw from (fewer than messages makes duplicates).
    pub distinct_ips: usize,
    /// Distinct device ids to draw from.
    pub distinct_devices: usize,
}

/// The project's sample: 100 messages shaped like Fetch's, with repeated ip and device_id
/// values (so duplicates show in the table) and five malformed messages.
pub fn project_sample() -> Vec<String> {
    let mut messages = synthetic(95, 7, Shape { distinct_ips: 60, distinct_devices: 70 });
    // Spread the malformed ones through the queue rather than at the end.
    for (i, body) in MALFORMED.iter().enumerate() {
        messages.insert(i * 19 + 7, (*body).to_owned());
    }
    messages
}

/// `count` valid messages from a seeded generator: the same seed gives the same messages.
pub fn synthetic(count: usize, seed: u64, shape: Shape) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let ips: Vec<String> = (0..shape.distinct_ips.max(1)).map(|i| ip(&mut rng, i)).collect();
    let devices: Vec<String> = (0..shape.distinct_devices.max(1))
        .map(|_| {
            format!(
                "{:03}-{:02}-{:04}",
                rng.random_range(0..1000),
                rng.random_range(0..100),
                rng.random_range(0..10_000)
            )
        })
        .collect();
    (0..count)
        .map(|_| {
            let user_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            let body = serde_json::json!({
                "user_id": user_id.to_string(),
                "app_version": APP_VERSIONS.choose(&mut rng),
                "device_type": DEVICE_TYPES.choose(&mut rng),
                "ip": ips.choose(&mut rng),
                "locale": LOCALES.choose(&mut rng).copied().flatten(),
                "device_id": devices.choose(&mut rng),
            });
            body.to_string()
        })
        .collect()
}

/// The fields of a row of `user_logins` besides its tokens, like the pipeline's rows: what a
/// decoy row carries so that nothing tells it apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlausibleRow {
    /// A random user id.
    pub user_id: String,
    /// `android` or `ios`.
    pub device_type: String,
    /// A locale, or none.
    pub locale: Option<String>,
    /// The integer form of the app version, when it has one.
    pub app_version: Option<i32>,
    /// The app version as sent.
    pub app_version_raw: String,
    /// How many days before today the row is dated (0 to 89).
    pub days_ago: i32,
    /// A random message id, in the shape SQS gives.
    pub message_id: String,
}

/// A [`PlausibleRow`] drawn from `rng`.
pub fn plausible_row(rng: &mut impl Rng) -> PlausibleRow {
    let raw = (*APP_VERSIONS.choose(rng).expect("not empty")).to_owned();
    PlausibleRow {
        user_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string(),
        device_type: (*DEVICE_TYPES.choose(rng).expect("not empty")).to_owned(),
        locale: LOCALES.choose(rng).copied().flatten().map(str::to_owned),
        app_version: fetchreward_model::app_version_number(&raw),
        app_version_raw: raw,
        days_ago: rng.random_range(0..90),
        message_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string(),
    }
}

/// Bodies that look like logins but break one rule each that the table would otherwise
/// enforce: a NUL character (which Postgres text cannot hold) in each string field, and each
/// field one character longer than its column. `seed` varies the users, so several calls give
/// distinct bodies.
pub fn poison(seed: u64) -> Vec<String> {
    let base = |user: &str| {
        serde_json::json!({
            "user_id": user,
            "app_version": "2.3.0",
            "device_type": "android",
            "ip": "198.51.100.7",
            "locale": "RU",
            "device_id": "593-47-5928",
        })
    };
    let limits: [(&str, usize); 6] = [
        ("user_id", 129),
        ("device_type", 33),
        ("locale", 33),
        ("app_version", 33),
        ("ip", 257),
        ("device_id", 257),
    ];
    let mut bodies = Vec::new();
    for (i, (field, length)) in limits.into_iter().enumerate() {
        let mut nul = base(&format!("poison-{seed}-nul-{i}"));
        let value = nul[field].as_str().unwrap_or_default().to_owned();
        nul[field] = serde_json::Value::String(format!("{}\u{0}{}", &value[..1], &value[1..]));
        bodies.push(nul.to_string());
        let mut long = base(&format!("poison-{seed}-long-{i}"));
        let prefix = seed.to_string();
        let padding = "7".repeat(length.saturating_sub(prefix.len()));
        long[field] = serde_json::Value::String(format!("{prefix}{padding}"));
        bodies.push(long.to_string());
    }
    bodies
}

/// Mostly public-looking IPv4 addresses, every 16th an IPv6 one.
fn ip(rng: &mut StdRng, index: usize) -> String {
    if index % 16 == 15 {
        let groups: Vec<String> = (0..4).map(|_| format!("{:x}", rng.random::<u16>())).collect();
        format!("2001:db8:{}::{}", groups[..3].join(":"), groups[3])
    } else {
        let octets: [u8; 4] =
            [rng.random_range(1..=223), rng.random(), rng.random(), rng.random_range(1..=254)];
        format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3])
    }
}

/// Messages from a file: a JSON array (each element becomes one body) or JSON lines (each
/// non-empty line is one body, as it is). Gzip is recognised by its magic bytes.
pub fn from_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_string(&mut text)
            .with_context(|| format!("{} is not valid gzip-compressed UTF-8", path.display()))?;
        text
    } else {
        String::from_utf8(raw).with_context(|| format!("{} is not UTF-8", path.display()))?
    };
    if text.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(&text).with_context(|| {
            format!("{} starts like a JSON array but is not one", path.display())
        })?;
        Ok(values.iter().map(serde_json::Value::to_string).collect())
    } else {
        Ok(text.lines().filter(|line| !line.trim().is_empty()).map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use fetchreward_model::parse_login;

    use super::*;

    #[test]
    fn the_project_sample_is_deterministic_with_duplicates_and_malformed_messages() {
        let sample = project_sample();
        assert_eq!(sample, project_sample());
        assert_eq!(sample.len(), 100);
        let valid: Vec<_> = sample.iter().filter_map(|b| parse_login(b.as_bytes()).ok()).collect();
        assert_eq!(valid.len(), 95);
        let ips: HashSet<&str> =
            valid.iter().filter_map(|e| e.ip.as_ref()).map(|p| p.expose()).collect();
        assert!(ips.len() < valid.len(), "some ips repeat");
        let devices: HashSet<&str> =
            valid.iter().filter_map(|e| e.device_id.as_ref()).map(|p| p.expose()).collect();
        assert!(devices.len() < valid.len(), "some device ids repeat");
    }

    #[test]
    fn different_seeds_give_different_messages() {
        let shape = Shape { distinct_ips: 10, distinct_devices: 10 };
        assert_ne!(synthetic(5, 1, shape), synthetic(5, 2, shape));
        assert!(synthetic(50, 1, shape).iter().all(|b| parse_login(b.as_bytes()).is_ok()));
    }

    #[test]
    fn fetch_sample_reads_as_one_hundred_bodies() {
        let Some(path) = fetchreward_testkit::fetch_sample() else { return };
        let bodies = from_file(&path).expect("reads");
        assert_eq!(bodies.len(), 100);
        assert_eq!(bodies.iter().filter(|b| parse_login(b.as_bytes()).is_err()).count(), 1);
    }

    #[test]
    fn json_lines_are_kept_byte_for_byte() {
        let path = std::env::temp_dir().join(format!("fr-lines-{}.jsonl", uuid::Uuid::new_v4()));
        std::fs::write(&path, "{\"user_id\": \"a\"}\n\nnot json\n").expect("writes");
        assert_eq!(from_file(&path).expect("reads"), ["{\"user_id\": \"a\"}", "not json"]);
        std::fs::remove_file(path).ok();
    }
}
