//! YAML text -> validated `Config`. Errors are fine; panics are not.
#![no_main]

use authgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text) {
        Ok(config) => {
            // Validation guarantees, re-checked on whatever got through.
            assert!(!config.routes.is_empty());
            for r in &config.routes {
                assert!(r.path_prefix.starts_with('/'), "{:?}", r.path_prefix);
            }
            assert!(config.limits.max_connections > 0);
        }
        Err(e) => {
            // Every error renders (Display is what the operator sees).
            let _ = e.to_string();
        }
    }
});
