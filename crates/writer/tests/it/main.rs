//! The writer against a real Postgres: one fresh database per test, the service on port 0.

mod authz;
mod helpers;
mod migrations;
mod service;
mod shards;
mod writes;
