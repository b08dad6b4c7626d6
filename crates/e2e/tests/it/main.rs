//! The whole pipeline end to end: fauxqs, the vault on moto KMS, the writer, one fresh
//! database and queue pair per test, every service on port 0.

mod delivery;
mod observability;
mod refusals;
mod samples;
mod sns;
mod sqs;
mod subjects;
