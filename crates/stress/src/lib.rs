//! The whole pipeline as processes, for measurements and fault injection: the library behind
//! `fetchreward-stress chaos` and `fetchreward-stress soak` (`make chaos`, `make soak`, see
//! docs/chaos.md), also used by the pipeline benchmark (`make bench`).
//!
//! [`process`] starts a release binary, measures it from `/proc`, kills it with SIGKILL and
//! starts it again; [`services`] starts one vault + writer + ingestor set on its own database,
//! queue pair, KMS key, certificates and ports.

pub mod process;
pub mod services;
