//! Configuration from environment variables.
//!
//! Services read their settings through an [`EnvSource`], so tests pass a map instead of
//! touching the process environment. A [`ConfigReader`] records every problem it meets and
//! [`ConfigReader::finish`] reports them all at once: an operator fixes a bad deployment in one
//! round, not one variable per restart.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use fetchreward_telemetry::{LogFormat, LoggingConfig};
use secrecy::SecretString;

/// Where configuration values come from.
pub trait EnvSource {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl EnvSource for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| (*v).to_owned())
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads typed values from an [`EnvSource`], remembering every problem.
pub struct ConfigReader<'a> {
    env: &'a dyn EnvSource,
    problems: Vec<String>,
}

impl<'a> ConfigReader<'a> {
    /// A reader over `env`.
    pub fn new(env: &'a dyn EnvSource) -> Self {
        ConfigReader { env, problems: Vec::new() }
    }

    /// The raw value of `key`, treating an empty value as unset.
    pub fn raw(&self, key: &str) -> Option<String> {
        self.env.get(key).filter(|v| !v.trim().is_empty())
    }

    /// A required value. Records a problem and returns `None` when unset or unparseable.
    pub fn required<T>(&mut self, key: &str, expected: &str) -> Option<T>
    where
        T: FromStr,
    {
        match self.raw(key) {
            None => {
                self.problem(format!("{key} is required ({expected})"));
                None
            }
            Some(raw) => self.parse(key, &raw, expected),
        }
    }

    /// An optional value: `None` when unset; records a problem when unparseable.
    pub fn optional<T>(&mut self, key: &str, expected: &str) -> Option<T>
    where
        T: FromStr,
    {
        let raw = self.raw(key)?;
        self.parse(key, &raw, expected)
    }

    /// A value with a default for when it is unset.
    pub fn or_default<T>(&mut self, key: &str, default: T, expected: &str) -> T
    where
        T: FromStr,
    {
        match self.raw(key) {
            None => default,
            Some(raw) => self.parse(key, &raw, expected).unwrap_or(default),
        }
    }

    /// A count from 1 to `max`, `default` when unset.
    pub fn count(&mut self, key: &str, default: usize, max: usize) -> usize {
        let expected = format!("a whole number from 1 to {max}");
        let value = self.or_default(key, default, &expected);
        if !(1..=max).contains(&value) {
            self.problem(format!("{key} is not valid: expected {expected}"));
        }
        value
    }

    /// A socket address such as `0.0.0.0:50051`.
    pub fn addr(&mut self, key: &str, default: &str) -> SocketAddr {
        let fallback = SocketAddr::from_str(default).expect("defaults are valid addresses");
        self.or_default(key, fallback, "an address such as 0.0.0.0:8080")
    }

    /// A whole number of seconds.
    pub fn seconds(&mut self, key: &str, default: u64) -> Duration {
        Duration::from_secs(self.or_default(key, default, "a whole number of seconds"))
    }

    /// A boolean: `true`/`false`, `1`/`0`.
    pub fn flag(&mut self, key: &str) -> bool {
        match self.raw(key).as_deref().map(str::trim) {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(_) => {
                self.problem(format!("{key} must be true or false"));
                false
            }
        }
    }

    /// A comma-separated list, without empty items.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.raw(key)
            .map(|raw| {
                raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
            })
            .unwrap_or_default()
    }

    /// A secret: never echoed in problems or `Debug`.
    pub fn secret(&mut self, key: &str, expected: &str) -> Option<SecretString> {
        match self.raw(key) {
            None => {
                self.problem(format!("{key} is required ({expected})"));
                None
            }
            Some(raw) => Some(SecretString::from(raw)),
        }
    }

    /// A secret given inline (`key`) or, better, as the path of a file that holds it
    /// (`{key}_FILE`: a Kubernetes Secret mounted as a file, which never shows in the process
    /// environment): one of the two, not both. A file's trailing newline is dropped. `None` when
    /// neither is set (a problem when `required`) or the file cannot be read.
    pub fn secret_or_file(
        &mut self,
        key: &str,
        expected: &str,
        required: bool,
    ) -> Option<SecretString> {
        let file_key = format!("{key}_FILE");
        match (self.raw(key), self.raw(&file_key)) {
            (Some(_), Some(_)) => {
                self.problem(format!("{key} and {file_key} are both set: set one"));
                None
            }
            (Some(raw), None) => Some(SecretString::from(raw)),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => {
                    Some(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned()))
                }
                Ok(_) => {
                    self.problem(format!("{file_key}: {path} is empty ({expected})"));
                    None
                }
                Err(err) => {
                    self.problem(format!("{file_key}: cannot read {path}: {err}"));
                    None
                }
            },
            (None, None) => {
                if required {
                    self.problem(format!("{key} or {file_key} is required ({expected})"));
                }
                None
            }
        }
    }

    /// A path to a file that must exist and be readable.
    pub fn file(&mut self, key: &str) -> Option<PathBuf> {
        let path = PathBuf::from(self.raw(key)?);
        if let Err(err) = std::fs::File::open(&path) {
            self.problem(format!("{key}: cannot read {}: {err}", path.display()));
            return None;
        }
        Some(path)
    }

    /// Records a problem found by the caller (a rule between several values, say).
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// `Ok` when no problem was recorded; otherwise every problem.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.problems.is_empty() { Ok(()) } else { Err(ConfigErrors(self.problems)) }
    }

    fn parse<T: FromStr>(&mut self, key: &str, raw: &str, expected: &str) -> Option<T> {
        match raw.trim().parse() {
            Ok(value) => Some(value),
            Err(_) => {
                // The value itself is not echoed: it may be a secret set in the wrong variable.
                self.problem(format!("{key} is not valid: expected {expected}"));
                None
            }
        }
    }
}

/// Settings every service reads: logging, the operations server, the shutdown grace period.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// Logging and trace export.
    pub logging: LoggingConfig,
    /// Address of the `/metrics` `/healthz` `/readyz` server (`HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// How long in-flight work may take after SIGTERM (`SHUTDOWN_GRACE_SECS`).
    pub grace: Duration,
    /// Threads of the async runtime (`WORKER_THREADS`, default 1): a service scales out by
    /// replicas, and one thread per process spends the least CPU per message
    /// (docs/performance.md).
    pub worker_threads: usize,
}

/// The most `WORKER_THREADS` accepted.
const MAX_WORKER_THREADS: usize = 256;

impl CommonConfig {
    /// Reads `LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `HTTP_ADDR`,
    /// `SHUTDOWN_GRACE_SECS` and `WORKER_THREADS`.
    pub fn from_env(
        reader: &mut ConfigReader<'_>,
        service: &'static str,
        http_default: &str,
    ) -> Self {
        let format = reader.or_default("LOG_FORMAT", LogFormat::Json, "`json` or `text`");
        let filter = reader.raw("RUST_LOG").unwrap_or_else(|| "info".to_owned());
        if fetchreward_telemetry::logging::check_filter(&filter).is_err() {
            reader.problem("RUST_LOG is not a valid log filter");
        }
        CommonConfig {
            logging: LoggingConfig {
                service,
                format,
                filter,
                otlp_endpoint: reader.raw("OTEL_EXPORTER_OTLP_ENDPOINT"),
            },
            http_addr: reader.addr("HTTP_ADDR", http_default),
            grace: reader.seconds("SHUTDOWN_GRACE_SECS", 20),
            worker_threads: reader.count("WORKER_THREADS", 1, MAX_WORKER_THREADS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_comes_inline_or_from_a_file_never_both() {
        let path = std::env::temp_dir().join(format!("fr-secret-{}", std::process::id()));
        std::fs::write(&path, "postgres://u:p@db/x\n").expect("writes");
        let file = path.to_str().expect("utf-8").to_owned();
        let read = |pairs: &[(&str, &str)]| {
            let env: HashMap<&str, &str> = pairs.iter().copied().collect();
            let mut reader = ConfigReader::new(&env);
            let secret = reader.secret_or_file("URL", "a URL", true);
            reader
                .finish()
                .map(|()| secret.map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned()))
                .map_err(|err| err.to_string())
        };
        assert_eq!(read(&[("URL", "inline")]), Ok(Some("inline".to_owned())));
        assert_eq!(read(&[("URL_FILE", &file)]), Ok(Some("postgres://u:p@db/x".to_owned())));
        let both = read(&[("URL", "inline"), ("URL_FILE", &file)]).expect_err("both");
        assert!(both.contains("URL and URL_FILE are both set"), "{both}");
        let neither = read(&[]).expect_err("neither");
        assert!(neither.contains("URL or URL_FILE is required"), "{neither}");
        let missing = read(&[("URL_FILE", "/nonexistent/url")]).expect_err("unreadable");
        assert!(missing.contains("URL_FILE: cannot read /nonexistent/url"), "{missing}");
        std::fs::remove_file(&path).expect("removes");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let env: HashMap<&str, &str> =
            HashMap::from([("PORT", "eighty"), ("ADDR", "nowhere"), ("FLAG", "maybe")]);
        let mut reader = ConfigReader::new(&env);
        let _: Option<u16> = reader.required("MISSING", "a port");
        let _: Option<u16> = reader.required("PORT", "a port");
        let _ = reader.addr("ADDR", "0.0.0.0:1");
        let _ = reader.flag("FLAG");
        let errors = reader.finish().expect_err("four problems");
        assert_eq!(errors.0.len(), 4, "{errors}");
        let text = errors.to_string();
        assert!(text.contains("MISSING is required"), "{text}");
        assert!(text.contains("PORT is not valid"), "{text}");
        assert!(!text.contains("eighty"), "values are not echoed: {text}");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let env: HashMap<&str, &str> = HashMap::from([("EMPTY", " ")]);
        let mut reader = ConfigReader::new(&env);
        assert_eq!(reader.addr("EMPTY", "127.0.0.1:9"), "127.0.0.1:9".parse().expect("addr"));
        assert_eq!(reader.seconds("UNSET", 20), Duration::from_secs(20));
        assert!(!reader.flag("UNSET"));
        assert!(reader.list("UNSET").is_empty());
        reader.finish().expect("no problems");
    }

    #[test]
    fn worker_threads_default_to_one_and_stay_in_range() {
        let threads = |value: Option<&str>| {
            let env: HashMap<&str, &str> =
                value.map(|v| ("WORKER_THREADS", v)).into_iter().collect();
            let mut reader = ConfigReader::new(&env);
            let config = CommonConfig::from_env(&mut reader, "test", "0.0.0.0:1");
            reader.finish().map(|()| config.worker_threads).map_err(|errors| errors.to_string())
        };
        assert_eq!(threads(None), Ok(1));
        assert_eq!(threads(Some("4")), Ok(4));
        for bad in ["0", "257", "many"] {
            let error = threads(Some(bad)).expect_err(bad);
            assert!(
                error
                    .contains("WORKER_THREADS is not valid: expected a whole number from 1 to 256"),
                "{error}"
            );
        }
    }

    #[test]
    fn lists_are_split_and_trimmed() {
        let env: HashMap<&str, &str> = HashMap::from([("IDS", " a, ,b ,c")]);
        assert_eq!(ConfigReader::new(&env).list("IDS"), ["a", "b", "c"]);
    }

    #[test]
    fn a_missing_file_is_a_problem() {
        let env: HashMap<&str, &str> = HashMap::from([("CA", "/nonexistent/ca.pem")]);
        let mut reader = ConfigReader::new(&env);
        assert_eq!(reader.file("CA"), None);
        assert!(reader.finish().expect_err("missing").to_string().contains("cannot read"));
    }
}
