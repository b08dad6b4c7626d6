//! The library behind the `fetchreward` command: sample messages and queue operations, also
//! used by the end-to-end tests and benchmarks.

pub mod archive;
pub mod database;
pub mod dlq;
pub mod health;
pub mod queue;
pub mod sample;
pub mod subject;
pub mod vault;
