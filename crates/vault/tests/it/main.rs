//! The vault against a real Postgres and moto KMS: a fresh database and KMS key per test, the
//! service on port 0, a tonic client.

mod authz;
mod erasure;
mod helpers;
mod privacy;
mod recovery;
mod replica;
mod rotation;
mod startup;
mod tokenize;
mod trail;
