//! The read_committed view of a topic from its raw log: `weir_sinks::kafka_log`, which
//! `weir verify` uses too.

// Each test file uses some of these.
#[allow(unused_imports)]
pub use weir::sinks::kafka_log::*;
