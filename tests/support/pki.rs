//! Moved to `testkit/src/pki.rs` (the `authgate-testkit` crate). Only
//! `examples/fake_apiserver.rs` still names this path, with `#[path]`; once it
//! uses testkit (a dev-dependency), delete tests/support/. The tests do not
//! compile this file.

#[path = "../../testkit/src/pki.rs"]
mod imp;
pub use imp::*;
