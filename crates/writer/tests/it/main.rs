//! The writer against a real Postgres: one fresh database per test, the service on port 0.

mod helpers;
mod migrations;
mod service;
mod writes;
