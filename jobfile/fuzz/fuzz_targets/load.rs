//! Any bytes given to the job-file loader: it must return problems, never panic.
//! Run with `cargo +nightly fuzz run load` from `jobfile/` (not built by CI).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = weir_jobfile::load("fuzz.yaml", text, &weir_jobfile::Registry::default());
    }
});
