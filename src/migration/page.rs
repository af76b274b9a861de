//! `GET /migration` as one self-contained HTML page (`Accept: text/html`):
//! migration progress, token use per route, one row per identity.
//!
//! Everything is rendered here, server side, and every value is
//! HTML-escaped ([`escape`]): identities come from certificates and tokens,
//! so a user named `<script>` must show as text. The page's one inline
//! script only adds relative times and a filter, reading `textContent`;
//! the one inline style and script are allowed by hash in a strict
//! Content-Security-Policy ([`content_security_policy`]) that allows
//! nothing else: no external script, style, font, image or frame, no form
//! target, no `<base>`.

use std::fmt::Write as _;
use std::sync::LazyLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::report::{Report, RouteRow, Row, Seen};
use super::text::pinned;
use super::when::rfc3339_string;

/// The page's stylesheet (allowed by its hash).
const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
progress{width:12em;vertical-align:middle}
.warn{color:#a33;font-weight:600}.ago{color:#666;margin-left:.4em}
tr.hidden{display:none}
";

/// The page's script (allowed by its hash): relative times and a filter.
/// It reads and writes text only (`textContent`), never markup.
const SCRIPT: &str = "
(function(){
var now=Math.floor(Date.now()/1000);
function ago(s){if(s<0)s=0;if(s<90)return s+'s ago';if(s<5400)return Math.round(s/60)+'m ago';
if(s<129600)return Math.round(s/3600)+'h ago';return Math.round(s/86400)+'d ago';}
document.querySelectorAll('time[data-unix]').forEach(function(t){
var sp=document.createElement('span');sp.className='ago';
sp.textContent='('+ago(now-Number(t.getAttribute('data-unix')))+')';t.after(sp);});
var rows=Array.prototype.slice.call(document.querySelectorAll('#identities tbody tr'));
var f=document.getElementById('filter'),tok=document.getElementById('token-only'),
shown=document.getElementById('shown');
function apply(){var q=f.value.toLowerCase(),n=0;rows.forEach(function(r){
var id=r.querySelector('td.identity').textContent.toLowerCase();
var hide=(q&&id.indexOf(q)<0)||(tok.checked&&r.getAttribute('data-token')!=='1');
r.classList.toggle('hidden',hide);if(!hide)n++;});
shown.textContent=n+' of '+rows.length+' shown';}
f.addEventListener('input',apply);tok.addEventListener('change',apply);apply();
document.body.setAttribute('data-ready','1');
})();
";

/// The `Content-Security-Policy` of the page: its own inline style and
/// script by hash, nothing else at all.
pub fn content_security_policy() -> &'static str {
    static CSP: LazyLock<String> = LazyLock::new(|| {
        let hash = |s: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s));
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             img-src 'none'; font-src 'none'; connect-src 'none'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
            hash(SCRIPT),
            hash(STYLE)
        )
    });
    &CSP
}

/// The page as a response, with its Content-Security-Policy; never cached,
/// never sniffed, never framed.
pub fn response(report: &Report) -> http::Response<crate::body::Body> {
    use http::header::{self, HeaderValue};
    // A constant; should it ever not be a header value, no page without it.
    let Ok(csp) = HeaderValue::from_str(content_security_policy()) else {
        return crate::body::text(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "the page's Content-Security-Policy is not a header value\n",
        );
    };
    let mut resp = crate::body::with_type(
        http::StatusCode::OK,
        render(report),
        Some(HeaderValue::from_static("text/html; charset=utf-8")),
    );
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// `s` with `& < > " '` as character references: safe as element text and
/// as a quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(4096 + 512 * report.identities.len());
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>authgate: token to mTLS migration</title><style>",
    );
    out.push_str(STYLE);
    out.push_str("</style></head>\n<body>\n<h1>Token to mTLS migration</h1>\n");
    progress(&mut out, report);
    routes(&mut out, &report.routes);
    identities(&mut out, report);
    out.push_str("<script>");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body></html>\n");
    out
}

fn share(out: &mut String, id: &str, what: &str, part: u64, whole: u64) {
    let pct = part.saturating_mul(100).checked_div(whole).unwrap_or(0);
    let _ = writeln!(
        out,
        "<p>{what}: <progress max=\"100\" value=\"{pct}\"></progress> \
         <strong id=\"{id}\">{pct}%</strong> ({part} of {whole})</p>"
    );
}

fn progress(out: &mut String, r: &Report) {
    let s = &r.summary;
    out.push_str("<section id=\"progress\">\n");
    share(
        out,
        "requests-mtls",
        "Requests with a client certificate",
        s.mtls_requests,
        s.mtls_requests + s.token_requests,
    );
    share(
        out,
        "identities-mtls",
        "Identities that sent no token",
        s.mtls_only_identities as u64,
        s.identities as u64,
    );
    let _ = writeln!(
        out,
        "<p>Served only because a lever is a dry run (would be refused when enforced): \
         <strong id=\"would-refuse\"{}>{}</strong></p>\n<p>Identities tracked by name: {} of at most {}; \
         since this replica started.</p>\n</section>",
        if s.would_refuse > 0 {
            " class=\"warn\""
        } else {
            ""
        },
        s.would_refuse,
        s.identities,
        r.max_identities,
    );
}

fn when(out: &mut String, seen: Option<Seen>) {
    match seen {
        Some(s) => {
            let t = rfc3339_string(s.last_seen);
            let _ = write!(
                out,
                "<td><time datetime=\"{t}\" data-unix=\"{}\">{t}</time></td>",
                s.last_seen
            );
        }
        None => out.push_str("<td>never</td>"),
    }
}

fn routes(out: &mut String, routes: &[RouteRow]) {
    out.push_str(
        "<h2>Routes</h2>\n<table id=\"routes\"><thead><tr><th>Route</th><th>Token requests</th>\
         <th>Token last seen</th><th>mTLS requests</th><th>mTLS last seen</th>\
         <th>Would be refused</th></tr></thead><tbody>\n",
    );
    for r in routes {
        let route = escape(&r.route);
        let _ = write!(
            out,
            "<tr data-route=\"{route}\"><td class=\"route\">{route}</td><td class=\"n\">{}</td>",
            r.token.map_or(0, |s| s.requests)
        );
        when(out, r.token);
        let _ = write!(
            out,
            "<td class=\"n\">{}</td>",
            r.mtls.map_or(0, |s| s.requests)
        );
        when(out, r.mtls);
        let refused: Vec<String> = r
            .would_refuse
            .iter()
            .map(|(reason, n)| format!("{n} ({})", escape(reason)))
            .collect();
        let _ = writeln!(
            out,
            "<td class=\"would-refuse\">{}</td></tr>",
            if refused.is_empty() {
                "-".to_owned()
            } else {
                refused.join(", ")
            }
        );
    }
    out.push_str("</tbody></table>\n");
}

fn identities(out: &mut String, r: &Report) {
    out.push_str(
        "<h2>Identities</h2>\n<p><input id=\"filter\" type=\"search\" placeholder=\"filter by identity\" \
         aria-label=\"filter by identity\"> <label><input id=\"token-only\" type=\"checkbox\"> \
         token users only</label> <span id=\"shown\"></span></p>\n\
         <table id=\"identities\"><thead><tr><th>Identity</th><th>Method</th><th>Token requests</th>\
         <th>mTLS requests</th><th>Last seen</th><th>Pinned</th><th>Would be refused</th>\
         <th>Routes</th></tr></thead><tbody>\n",
    );
    for row in &r.identities {
        identity_row(out, row);
    }
    out.push_str("</tbody></table>\n");
}

fn identity_row(out: &mut String, row: &Row) {
    let u = &row.usage;
    let method = match (u.mtls.is_some(), u.token.is_some()) {
        (true, true) => "mtls+token",
        (false, true) => "token",
        (true, false) => "mtls",
        (false, false) => "-",
    };
    let last = [u.mtls, u.token]
        .into_iter()
        .flatten()
        .max_by_key(|s| s.last_seen);
    let _ = write!(
        out,
        "<tr data-token=\"{}\"><td class=\"identity\">{}</td><td class=\"method\">{method}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td>",
        u8::from(u.token.is_some()),
        escape(&row.identity),
        u.token.map_or(0, |s| s.requests),
        u.mtls.map_or(0, |s| s.requests),
    );
    when(out, last);
    let routes: Vec<String> = u.routes.iter().map(|r| escape(r)).collect();
    let _ = writeln!(
        out,
        "<td class=\"pinned\">{}</td><td class=\"n would-refuse{}\">{}</td><td>{}</td></tr>",
        pinned(u),
        if u.would_refuse > 0 { " warn" } else { "" },
        u.would_refuse,
        routes.join(", "),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod::{Mtls, Token};
    use crate::migration::Pin;
    use crate::migration::report::Tracker;

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            escape("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn hostile_names_are_text_and_the_csp_allows_only_the_pages_own_code() {
        let evil = "<img src=x onerror=alert(1)>\"'&";
        let t = Tracker::new(10, true);
        t.declare_routes(["/", "/x\"><b>"]);
        t.record(evil, Token, "/", Pin::DryRun, 100);
        t.record("alice", Mtls, "/", Pin::No, 200);
        t.would_refuse(evil, "/", "mtls_required", true);
        let html = render(&t.report());
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;"),
            "{html}"
        );
        assert_eq!(html.matches("<script>").count(), 1);
        assert!(html.contains("<strong id=\"requests-mtls\">50%</strong> (1 of 2)"));
        assert!(html.contains("<td class=\"pinned\">dry-run</td>"));
        let csp = content_security_policy();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
    }
}
