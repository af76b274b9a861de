//! `cache_memory` under mimalloc, the binary's allocator (src/main.rs): the
//! same caches and identities, the resident set as a deployment sees it.
//! Run with `cargo bench --bench cache_memory_mimalloc`.

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

include!("memory/body.rs");
