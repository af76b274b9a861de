//! Memory per idle connection: each server's resident set (VmRSS of its
//! processes) before and after `n` TLS connections that each made one
//! keep-alive request and then wait, side by side in one run. What it is
//! for: `limits.max_connections` must fit the Deployment's memory limit.

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{Value, json};

use super::{Bench, Target, log};
use crate::{Res, load, procstat};

/// Resident bytes of `root` and its children (nginx's master and worker).
fn rss(root: u32) -> u64 {
    procstat::family(root)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// Opens `n` idle connections to each target in turn and reports the
/// resident bytes each one costs.
pub(super) fn measure(b: &Bench<'_>, targets: &[Target], n: usize) -> Res<Value> {
    let config = load::client_config(&b.ca, None)?;
    let name = ServerName::try_from("localhost")?;
    let mut out = serde_json::Map::new();
    for t in targets {
        let before = rss(t.pid);
        let addr = SocketAddr::from(([127, 0, 0, 1], t.port));
        let held = b.rt.block_on(async {
            let mut held = Vec::with_capacity(n);
            for _ in 0..n {
                let (mut send, _, _) = load::open(addr, &config, &name).await?;
                load::request(&mut send, "/bench", Some(&b.token), false).await?;
                held.push(send);
            }
            Ok::<_, crate::Error>(held)
        })?;
        // Let the servers settle (buffers shrink after the response).
        std::thread::sleep(Duration::from_millis(500));
        let after = rss(t.pid);
        let per = after.saturating_sub(before) / n as u64;
        log(&format!(
            "idle connections {}: {n} open, RSS {} -> {} KiB, {per} bytes each",
            t.name,
            before / 1024,
            after / 1024
        ));
        drop(held);
        out.insert(
            t.name.clone(),
            json!({"connections": n, "rss_before": before, "rss_after": after, "bytes_per_connection": per}),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(Value::Object(out))
}
