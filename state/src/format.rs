//! The snapshot format of keyed state, for the code that stores and restores it
//! (weir-checkpoint's uploads and restore, the runtime's snapshot context).
//! Operators do not need anything here: they use the state types of the crate root.
//!
//! A frozen table ([`crate::FrozenKeyed`]) is split into shards (at most [`SHARDS`]).
//! Each shard is encoded by key group as one chunk, stored under
//! [`chunk_name`]`(state, table, shard)`; the keyed state of one key group may
//! therefore come in several chunks of one state, which [`is_chunk_of`] recognises.
//! [`encode_frozen`] encodes a whole frozen table in this form.
//!
//! ```text
//!  frozen table ─ shard 0..SHARDS ─encode_shard─▶ key group ─▶ "<state>␞<table>.<shard>" ─▶ bytes
//! ```
//!
//! ```
//! use weir_state::format::{chunk_name, is_chunk_of};
//! let name = chunk_name("count", 7, 3);
//! assert!(is_chunk_of(&name, "count"));
//! assert!(is_chunk_of("count", "count"));
//! assert!(!is_chunk_of(&name, "coun"));
//! ```

pub use crate::heap_table::SHARDS;
pub use crate::snapshot::{chunk_name, encode_frozen, is_chunk_of};
