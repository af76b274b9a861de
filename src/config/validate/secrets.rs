//! Parse errors that never echo a static token.
//!
//! serde-saphyr renders the source lines around an error, and inside
//! `static.tokens` one of them may hold the token. So when the file may hold
//! plaintext tokens, a parse error is rendered without the source lines, is
//! prefixed with the top-level key it falls in, and has every value that may
//! be a token cut out. What remains names the key, the line and column, and
//! the reason.

use serde_json::Value;

/// What a cut-out value is replaced with.
const REDACTED: &str = "<redacted>";

/// Keys of a `static.tokens` entry whose values are not secret.
const PUBLIC_KEYS: &[&str] = &["user", "uid", "groups", "token_sha256"];

/// The message of a YAML parse error of `text`, with no token in it.
pub(super) fn parse_error(text: &str, e: &serde_saphyr::Error) -> String {
    let mut secrets = textual_tokens(text);
    if let Ok(doc) = serde_saphyr::from_str::<Value>(text)
        && let Some(tokens) = doc.get("static").and_then(|s| s.get("tokens"))
    {
        collect(tokens, &mut secrets);
    }
    if secrets.is_empty() && !text.contains("tokens") {
        return e.to_string();
    }
    let plain = e.without_snippet().to_string();
    let plain = plain.strip_prefix("error: ").unwrap_or(&plain);
    let msg = match e.location().and_then(|l| section(text, l.line())) {
        Some(key) => format!("{key}: {plain}"),
        None => plain.to_owned(),
    };
    redact(&msg, &spellings(secrets))
}

/// The top-level key whose block holds line `line` (1-based).
fn section(text: &str, line: u64) -> Option<&str> {
    let upto = usize::try_from(line).ok()?;
    text.lines()
        .take(upto)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim()))
        .last()
}

/// Every scalar and key under `static.tokens`, but the public fields' values.
fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                if PUBLIC_KEYS.contains(&k.as_str()) {
                    continue;
                }
                if k != "token" {
                    out.push(k.clone());
                }
                collect(v, out);
            }
        }
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(_) | Value::Null => {}
    }
}

/// The values written after a `token:` key, read from the text itself (for
/// files too broken to parse): to the closing quote, or to the end of the
/// flow item or line.
fn textual_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("token") {
            let starts_key = rest[..at]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || "{,[-\"'".contains(c));
            rest = &rest[at + "token".len()..];
            let after = rest.trim_start_matches(['"', '\'']).trim_start();
            let Some(value) = after.strip_prefix(':').filter(|_| starts_key) else {
                continue;
            };
            let value = value.trim();
            let value = match value.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = &value[1..];
                    inner.find(q).map_or(inner, |end| &inner[..end])
                }
                _ => value
                    .find(|c| ",}]#".contains(c))
                    .map_or(value, |end| &value[..end])
                    .trim(),
            };
            if !value.is_empty() && !value.starts_with(['|', '>']) {
                out.push(value.to_owned());
            }
        }
    }
    out
}

/// Each secret as it may appear in a message: as is, trimmed, escaped, and
/// each of its lines; longest first, so no part of a longer one survives.
fn spellings(secrets: Vec<String>) -> Vec<String> {
    let mut all = Vec::new();
    for s in secrets {
        all.push(s.escape_debug().to_string());
        all.push(s.escape_default().to_string());
        all.extend(s.lines().map(|l| l.trim().to_owned()));
        all.push(s.trim().to_owned());
        all.push(s);
    }
    all.retain(|s| !s.is_empty());
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all.dedup();
    all
}

/// `msg` with each secret spelling of 4 characters or more cut out, and each
/// quoted span (`"…"`, `` `…` ``) that equals or contains a shorter one.
fn redact(msg: &str, secrets: &[String]) -> String {
    let mut out = msg.to_owned();
    for s in secrets.iter().filter(|s| s.chars().count() >= 4) {
        out = out.replace(s.as_str(), REDACTED);
    }
    for q in ['"', '`'] {
        let parts: Vec<&str> = out.split(q).collect();
        let mut rebuilt = String::with_capacity(out.len());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                rebuilt.push(q);
            }
            // Odd parts sit between a pair of quotes.
            let quoted = i % 2 == 1 && i + 1 < parts.len();
            if quoted && secrets.iter().any(|s| part.contains(s.as_str())) {
                rebuilt.push_str(REDACTED);
            } else {
                rebuilt.push_str(part);
            }
        }
        out = rebuilt;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_found_in_block_flow_and_quoted_styles() {
        let text = "a:\n  - token: plain-one\n  - {token: \"quoted two\", user: x}\n  - {\"token\": 'single three'}\ntoken_review: {}\nmytoken: no\n";
        assert_eq!(
            textual_tokens(text),
            ["plain-one", "quoted two", "single three"]
        );
    }

    #[test]
    fn quoted_spans_holding_a_short_secret_are_cut_out() {
        let got = redact("unknown field `ab`, line 1 \"xabx\" ab", &["ab".to_owned()]);
        assert_eq!(got, "unknown field `<redacted>`, line 1 \"<redacted>\" ab");
    }
}
