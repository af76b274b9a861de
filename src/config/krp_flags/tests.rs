use super::*;
use crate::config::Config;
use crate::config::krp::{KrpFlags, refuse_unsupported};

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    krp: KrpFlags,
}

fn parse(args: &[&str]) -> Result<KrpFlags, String> {
    let mut all = vec!["authgate"];
    all.extend_from_slice(args);
    <Cli as clap::Parser>::try_parse_from(all)
        .map(|c| c.krp)
        .map_err(|e| e.to_string())
}

fn base() -> Vec<&'static str> {
    vec![
        "--upstream=http://127.0.0.1:8081/",
        "--tls-cert-file=s.crt",
        "--tls-private-key-file=s.key",
    ]
}

#[test]
fn klog_flags_parse_as_pflag_parses_them() {
    // Booleans: bare or `=value` (Go's ParseBool spellings).
    for ok in [
        "--alsologtostderr",
        "--alsologtostderr=false",
        "--add-dir-header=T",
        "--one-output=0",
        "--skip-headers=true",
        "--skip-log-headers",
        "--logtostderr=true",
    ] {
        let f = parse(&[ok]).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(f.compat.ignored().len(), 1, "{ok}");
    }
    // `--flag false` makes `false` an argument, refused as kube-rbac-proxy does.
    assert!(parse(&["--alsologtostderr", "false"]).is_err());
    assert!(parse(&["--skip-headers=maybe"]).is_err());
    // Valued flags: `=value` or a separate value; a value is required.
    for ok in [
        &["--log-dir=/tmp/x"][..],
        &["--log-dir", "/tmp/x"],
        &["--log-file=/var/log/krp.log"],
        &["--log-file", "/var/log/krp.log"],
        &["--log-file-max-size=1800"],
        &["--log-file-max-size", "0"],
        &["--log-backtrace-at=proxy.go:42"],
        &["--log-backtrace-at", ":0"],
        &["--stderrthreshold=ERROR"],
        &["--stderrthreshold", "2"],
        &["--vmodule=proxy=4"],
        &["--log-flush-frequency=5s"],
    ] {
        let f = parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        assert_eq!(f.compat.ignored().len(), 1, "{ok:?}");
    }
    assert!(parse(&["--log-file-max-size=big"]).is_err());
    assert!(parse(&["--log-dir"]).is_err(), "a value is required");
    // `-v` as pflag's shorthand of `--v`.
    assert_eq!(parse(&["-v=4"]).unwrap().v, Some(4));
    assert_eq!(parse(&["-v", "2"]).unwrap().v, Some(2));
}

#[test]
fn all_ignored_logging_flags_make_one_warning_naming_each() {
    let f = parse(&[
        "--add-dir-header",
        "--alsologtostderr=false",
        "--log-backtrace-at=:0",
        "--log-dir=/tmp",
        "--log-file",
        "/tmp/f",
        "--log-file-max-size=10",
        "--one-output",
        "--skip-headers",
        "--skip-log-headers=true",
        "--stderrthreshold=INFO",
    ])
    .unwrap();
    let w = f.compat.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    for name in [
        "--add-dir-header",
        "--alsologtostderr",
        "--log-backtrace-at",
        "--log-dir",
        "--log-file,",
        "--log-file-max-size",
        "--one-output",
        "--skip-headers",
        "--skip-log-headers",
        "--stderrthreshold",
    ] {
        assert!(w[0].contains(name), "{name} in {}", w[0]);
    }
    assert!(parse(&[]).unwrap().compat.warnings().is_empty());
}

#[test]
fn every_kube_rbac_proxy_flag_is_mapped_or_refused_naming_what_to_use() {
    let value = |flag: &str| match flag {
        "--secure-listen-address" => "127.0.0.1:8443",
        "--upstream" => "http://127.0.0.1:8081",
        "--proxy-endpoints-port" | "--kube-api-burst" | "--v" | "--log-file-max-size" => "1",
        "--kube-api-qps" => "5",
        "--tls-min-version" => "VersionTLS12",
        "--tls-reload-interval" => "1m",
        f if f.ends_with("-enabled")
            || f.ends_with("-h2c")
            || f == "--http2-disable"
            || f == "--logtostderr"
            || f == "--add-dir-header"
            || f == "--alsologtostderr"
            || f == "--one-output"
            || f.starts_with("--skip-") =>
        {
            "true"
        }
        _ => "x",
    };
    for flag in FLAGS {
        if *flag == "--help" {
            continue;
        }
        let arg = format!("{flag}={}", value(flag));
        if let Err(why) = refuse_unsupported(&[arg.as_str()]) {
            assert!(why.contains(flag), "{why}");
            if !flag.starts_with("--oidc-") {
                assert!(
                    why.contains('`'),
                    "{flag}: the refusal names what to use: {why}"
                );
            }
            continue;
        }
        if *flag == "--tls-cipher-suites" {
            continue; // checked when applied (below)
        }
        parse(&[&arg]).unwrap_or_else(|e| panic!("{flag} is neither parsed nor refused: {e}"));
    }
}

#[test]
fn the_readme_table_lists_every_flag() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("| kube-rbac-proxy flag |")
        .expect("the README's kube-rbac-proxy table");
    let table: String = readme[start..]
        .lines()
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    for flag in FLAGS {
        assert!(
            table.contains(&format!("`{flag}")),
            "{flag} missing from README's table"
        );
    }
}

#[test]
fn cipher_suites_are_accepted_only_when_they_cover_what_authgate_offers() {
    // kube-prometheus's list: exactly the suites rustls offers, in Go's names.
    let kube_prometheus: Vec<String> = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(
        check_cipher_suites(&kube_prometheus, false).unwrap(),
        Vec::<String>::new()
    );
    let mut more = kube_prometheus.clone();
    more.push("TLS_RSA_WITH_AES_128_CBC_SHA".into());
    more.push("TLS_AES_128_GCM_SHA256".into());
    assert_eq!(
        check_cipher_suites(&more, false).unwrap(),
        ["TLS_RSA_WITH_AES_128_CBC_SHA"],
        "warned about, never offered"
    );
    let fewer = &kube_prometheus[..2];
    assert!(
        check_cipher_suites(fewer, true).is_ok(),
        "TLS 1.3 only: no TLS 1.2 suite is offered"
    );
    let e = check_cipher_suites(fewer, false).unwrap_err().to_string();
    assert!(e.starts_with("--tls-cipher-suites: "), "{e}");
    assert!(
        e.contains("leaves out TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        "{e}"
    );
    assert!(e.contains("tls.min_version"), "{e}");
    // Applied through the flags, a narrowing list refuses to start.
    let mut args = base();
    args.push("--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    let e = parse(&args).unwrap().apply(File::default()).unwrap_err();
    assert!(e.to_string().starts_with("--tls-cipher-suites"), "{e}");
    args.push("--tls-min-version=VersionTLS13");
    let c = Config::try_from(parse(&args).unwrap().apply(File::default()).unwrap()).unwrap();
    assert_eq!(c.tls.min_version, crate::config::TlsVersion::Tls13);
}

#[test]
fn http2_disable_serves_http1_only() {
    let mut args = base();
    args.push("--http2-disable");
    let c = Config::try_from(parse(&args).unwrap().apply(File::default()).unwrap()).unwrap();
    assert!(!c.tls.http2);
    let c = Config::try_from(parse(&base()).unwrap().apply(File::default()).unwrap()).unwrap();
    assert!(c.tls.http2);
    args.pop();
    args.push("--http2-disable=false");
    let c = Config::try_from(parse(&args).unwrap().apply(File::default()).unwrap()).unwrap();
    assert!(c.tls.http2);
}

#[test]
fn kube_rbac_proxy_flags_open_no_admin_port_unless_proxy_endpoints_port_asks() {
    let c = Config::try_from(parse(&base()).unwrap().apply(File::default()).unwrap()).unwrap();
    assert_eq!(c.admin.listen, None, "no 127.0.0.1:9090 next to Prometheus");

    let mut args = base();
    args.extend([
        "--secure-listen-address=10.1.2.3:8443",
        "--proxy-endpoints-port=8444",
    ]);
    let c = Config::try_from(parse(&args).unwrap().apply(File::default()).unwrap()).unwrap();
    assert_eq!(c.admin.listen, Some("10.1.2.3:8444".parse().unwrap()));
    assert!(
        c.admin.tls,
        "served with the main TLS material, as kube-rbac-proxy does"
    );

    let mut same = base();
    same.extend([
        "--secure-listen-address=10.1.2.3:8443",
        "--proxy-endpoints-port=8443",
    ]);
    let e = parse(&same).unwrap().apply(File::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--proxy-endpoints-port: 8443 is the port of --secure-listen-address"
    );

    // A file's own admin listener stays, unless the flag says otherwise.
    let file = || crate::config::parse_yaml("admin: {listen: \"127.0.0.1:9999\"}\n").unwrap();
    let c = Config::try_from(parse(&base()).unwrap().apply(file()).unwrap()).unwrap();
    assert_eq!(c.admin.listen, Some("127.0.0.1:9999".parse().unwrap()));
    let mut zero = base();
    zero.push("--proxy-endpoints-port=0");
    let c = Config::try_from(parse(&zero).unwrap().apply(file()).unwrap()).unwrap();
    assert_eq!(c.admin.listen, None);
}

#[test]
fn without_tls_files_a_self_signed_certificate_is_generated_in_memory() {
    let f = parse(&["--upstream=http://127.0.0.1:8081/"]).unwrap();
    let c = Config::try_from(f.apply(File::default()).unwrap()).unwrap();
    let pair = c.tls.self_signed.clone().expect("generated");
    assert!(pair.names.iter().any(|n| n == "localhost"));
    assert!(pair.names.iter().any(|n| n == "127.0.0.1"));
    assert!(
        !format!("{pair:?}").contains("PRIVATE KEY"),
        "the key is never printed"
    );
    let m = crate::tls::load(&c.tls).expect("the generated pair loads");
    assert!(m.status.serving_not_after > crate::clock::unix_now() + 300 * 86_400);
    assert!(
        crate::tls::directories(&c.tls).is_empty(),
        "nothing on disk to watch"
    );
    assert!(self_signed_warning(&c.tls).unwrap().contains("self-signed"));

    // One file without the other is refused by name.
    let e = parse(&["--upstream=http://x", "--tls-cert-file=c"])
        .unwrap()
        .apply(File::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "--tls-private-key-file: is needed with --tls-cert-file"
    );
}

#[test]
fn no_kube_rbac_proxy_flag_is_dropped_next_to_a_config_file() {
    // A file that alone serves everything; each flag narrows or changes it,
    // and must not be ignored just because no "main" flag came with it.
    let file = || {
        crate::config::parse_yaml(
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\n",
        )
        .unwrap()
    };
    let c = Config::try_from(
        parse(&["--allow-paths=/metrics"])
            .unwrap()
            .apply(file())
            .unwrap(),
    )
    .unwrap();
    assert!(!c.paths.allow.is_empty(), "--allow-paths applied");
    let c = Config::try_from(parse(&["--http2-disable"]).unwrap().apply(file()).unwrap()).unwrap();
    assert!(!c.tls.http2, "--http2-disable applied");
    let e = parse(&["--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
        .unwrap()
        .apply(file())
        .unwrap_err();
    assert!(e.to_string().starts_with("--tls-cipher-suites"), "{e}");
    let c = Config::try_from(
        parse(&["--auth-token-audiences=a"])
            .unwrap()
            .apply(file())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c.kubernetes.unwrap().token_review.unwrap().audiences, ["a"]);
    // Logging flags alone change nothing else in the file.
    let c = Config::try_from(
        parse(&["--v=4", "--logtostderr"])
            .unwrap()
            .apply(file())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
}
mod review_a;
