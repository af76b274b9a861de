//! Memory of the caches: resident set size after caching 100,000 distinct
//! ServiceAccount token identities, as the apiserver reports them (five
//! `extra`, groups shared by the namespace's accounts), and one access
//! decision for each (target: <= 48 MiB in all). Also prints the bytes per
//! entry of each cache as it counts them (`authgate_cache_bytes`).
//! Run with `cargo bench --bench cache_memory`.

mod support;

include!("memory/body.rs");
