#!/usr/bin/env python3
"""Aggregates the measurements of scripts/bench.sh.

Reads runs.jsonl (one line per measurement, written by bench.sh) and the load
generators' raw output, and writes OUT.json (settings, machine, every raw
number per round, and the summary), OUT.md (Markdown tables, also printed) and
OUT.svg (req/s and p99 per configuration, drawn here without third-party
packages). Exits 3 if a measured run failed: no successful responses, or more
than 1% errors or unexpected statuses.
"""

import argparse
import html
import json
import os
import statistics
import sys

CONFIG_LABELS = {
    "token": "token, keep-alive (HTTP/1.1)",
    "mtls": "mTLS, keep-alive (HTTP/1.1)",
    "handshake": "mTLS, new connection per request",
    "h2": "token, HTTP/2",
    "cache": "TokenReview + SAR via fake API",
}
SHORT = {
    "token": "token k-a",
    "mtls": "mTLS k-a",
    "handshake": "mTLS handshakes",
    "h2": "token h2",
}
# authgate / nginx req/s targets.
TARGETS = {"token": 1.2, "mtls": 1.2, "handshake": 1.0}
MAX_ERROR_FRACTION = 0.01
# Busy time on the server's CPU outside the server process (fraction of a
# CPU) above which a run is reported as disturbed. Loopback softirq work
# accounts for roughly 0.1-0.2 on a quiet machine.
OTHER_LOAD_WARN = 0.3


def load_raw(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def parse_run(run, raw_dir):
    """Normalised numbers of one measurement."""
    m = {
        "ok": 0,
        "non_2xx": 0,
        "errors": 0,
        "duration_s": None,
        "rps": None,
        "p50_ms": None,
        "p99_ms": None,
    }
    data = load_raw(os.path.join(raw_dir, run["raw"]))
    if data is None:
        m["problem"] = "no output from the load generator"
        return m
    tool = run["tool"]
    if tool == "oha":
        status = data.get("statusCodeDistribution", {})
        errs = data.get("errorDistribution", {})
        deadline = sum(v for k, v in errs.items() if "deadline" in k.lower())
        ok = sum(v for k, v in status.items() if k.startswith("2"))
        m.update(
            ok=ok,
            non_2xx=sum(status.values()) - ok,
            errors=sum(errs.values()) - deadline,
            aborted_at_deadline=deadline,
            duration_s=data["summary"]["total"],
            p50_ms=data["metrics"]["latency_ms"]["p50"],
            p99_ms=data["metrics"]["latency_ms"]["p99"],
            status=status,
            error_kinds=errs,
        )
    elif tool == "wrk":
        errors = sum(data[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout"))
        m.update(
            ok=data["requests"] - data["errors_status"],
            non_2xx=data["errors_status"],
            errors=errors,
            duration_s=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1e3,
            p99_ms=data["p99_us"] / 1e3,
        )
    elif tool == "h2load":
        m.update(
            ok=data["ok"],
            errors=data["failed"],
            duration_s=data["duration_s"],
            mean_ms=data.get("mean_ms"),
        )
    if m["duration_s"]:
        m["rps"] = m["ok"] / m["duration_s"]
    total = m["ok"] + m["non_2xx"] + m["errors"]
    if m["ok"] == 0:
        m["problem"] = "no successful responses"
    elif (m["non_2xx"] + m["errors"]) / total > MAX_ERROR_FRACTION:
        m["problem"] = f"{m['non_2xx']} non-2xx and {m['errors']} errors of {total}"
    if run.get("rc", 0) != 0:
        m["problem"] = f"load generator exit code {run['rc']}"
    wall = run["end"] - run["start"]
    if wall > 0:
        m["server_cpu_cores"] = run["server_cpu_s"] / wall
        if m["ok"] + m["non_2xx"]:
            # CPU time of the server process per response: independent of
            # whether the load generator or the server was the bottleneck.
            m["server_cpu_us_per_request"] = 1e6 * run["server_cpu_s"] / (m["ok"] + m["non_2xx"])
        if run.get("server_core_total_s"):
            m["server_core_busy"] = run["server_core_busy_s"] / run["server_core_total_s"]
            # Busy time of the server's CPU not spent in the server process:
            # softirq work plus whatever else ran there (other builds...).
            m["server_core_other"] = m["server_core_busy"] - m["server_cpu_cores"]
        if run.get("load_core_total_s"):
            m["load_core_busy"] = run["load_core_busy_s"] / run["load_core_total_s"]
    if run.get("access_lines") is not None and total:
        m["access_lines_per_response"] = run["access_lines"] / max(1, m["ok"] + m["non_2xx"])
    if run.get("tls_resumed") is not None and run.get("access_lines"):
        m["tls_resumed_fraction"] = run["tls_resumed"] / run["access_lines"]
    api = run.get("api")
    responses = m["ok"] + m["non_2xx"]
    if api and responses:
        m["api_token_reviews_per_1000"] = 1000 * api["token_reviews"] / responses
        m["api_access_reviews_per_1000"] = 1000 * api["access_reviews"] / responses
        m["api_calls_per_1000"] = m["api_token_reviews_per_1000"] + m["api_access_reviews_per_1000"]
    return m


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def fmt_spread(s, digits=0):
    if not s:
        return "–"
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


def summarise(runs):
    measured = [r for r in runs if r["phase"] == "run"]
    summary = {"vs_nginx": [], "cache": []}
    configs = []
    for r in measured:
        if r["config"] != "cache" and r["config"] not in configs:
            configs.append(r["config"])
    for cfg in configs:
        row = {"config": cfg, "label": CONFIG_LABELS.get(cfg, cfg), "servers": {}}
        by_round = {}
        for server in ("nginx", "authgate"):
            rs = [r for r in measured if r["config"] == cfg and r["server"] == server]
            row["servers"][server] = {
                "rps": spread([r["m"]["rps"] for r in rs]),
                "p50_ms": spread([r["m"]["p50_ms"] for r in rs]),
                "p99_ms": spread([r["m"]["p99_ms"] for r in rs]),
                "server_cpu_cores": spread([r["m"].get("server_cpu_cores") for r in rs]),
                "server_cpu_us_per_request": spread([r["m"].get("server_cpu_us_per_request") for r in rs]),
                "server_core_busy": spread([r["m"].get("server_core_busy") for r in rs]),
                "load_core_busy": spread([r["m"].get("load_core_busy") for r in rs]),
                "tls_resumed_fraction": spread([r["m"].get("tls_resumed_fraction") for r in rs]),
            }
            for r in rs:
                by_round.setdefault(r["round"], {})[server] = r["m"]
        ratios = []
        for rnd in sorted(by_round):
            a, n = by_round[rnd].get("authgate"), by_round[rnd].get("nginx")
            if a and n and a["rps"] is not None and n["rps"]:
                x = {"round": rnd, "ratio": a["rps"] / n["rps"]}
                if a.get("server_cpu_us_per_request") and n.get("server_cpu_us_per_request"):
                    # > 1: authgate needs less CPU per request than nginx.
                    x["cpu_ratio"] = n["server_cpu_us_per_request"] / a["server_cpu_us_per_request"]
                ratios.append(x)
        row["ratio_per_round"] = ratios
        row["ratio"] = spread([x["ratio"] for x in ratios])
        row["cpu_ratio"] = spread([x.get("cpu_ratio") for x in ratios])
        row["target"] = TARGETS.get(cfg)
        summary["vs_nginx"].append(row)
    for mode in ("on", "off"):
        rs = [r for r in measured if r["config"] == "cache" and r.get("cache") == mode]
        if not rs:
            continue
        warm = [r.get("api_warmup") or {} for r in rs]
        summary["cache"].append(
            {
                "cache": mode,
                "rps": spread([r["m"]["rps"] for r in rs]),
                "p50_ms": spread([r["m"]["p50_ms"] for r in rs]),
                "p99_ms": spread([r["m"]["p99_ms"] for r in rs]),
                "api_calls_per_1000": spread([r["m"].get("api_calls_per_1000") for r in rs]),
                "api_token_reviews_per_1000": spread([r["m"].get("api_token_reviews_per_1000") for r in rs]),
                "api_access_reviews_per_1000": spread([r["m"].get("api_access_reviews_per_1000") for r in rs]),
                "warmup_api_calls": spread(
                    [w.get("token_reviews", 0) + w.get("access_reviews", 0) for w in warm]
                ),
                "server_cpu_cores": spread([r["m"].get("server_cpu_cores") for r in rs]),
                "server_cpu_us_per_request": spread([r["m"].get("server_cpu_us_per_request") for r in rs]),
                "load_core_busy": spread([r["m"].get("load_core_busy") for r in rs]),
            }
        )
    return summary


def cpu(s):
    """'process / core / load core' medians, as fractions of one CPU."""
    parts = []
    for key in ("server_cpu_cores", "server_core_busy", "load_core_busy"):
        if key in s:
            parts.append(fmt(s[key]["median"], 2) if s.get(key) else "–")
    return " / ".join(parts)


def markdown(meta, summary, runs, problems):
    out = []
    title = "authgate vs nginx benchmark" + (" (smoke)" if meta.get("smoke") else "")
    out.append(f"# {title}: {meta.get('date')}\n")
    loads = [r["loadavg"] for r in runs]
    out.append(
        f"{meta.get('nproc')} CPUs ({meta.get('cpu_model')}), kernel {meta.get('kernel')}. "
        f"Server under test on CPU {meta.get('server_cpu')} (nginx: 1 worker; authgate: "
        f"TOKIO_WORKER_THREADS=1), load generator ({meta.get('loadgen')}), shared upstream "
        f"(nginx `return 200`) and fake API on CPU {meta.get('load_cpu')}. TLS 1.3, ECDSA P-256 "
        f"server certificate from `authgate certs init`, concurrency {meta.get('concurrency')} "
        f"(HTTP/2: {meta.get('h2_connections')} connections x {meta.get('h2_streams_per_connection')} "
        f"streams). {meta.get('rounds')} rounds x {meta.get('duration_s')} s, A/B order alternating "
        f"by round. Access logs: {'on for both (one line per request to a file)' if meta.get('access_log') else 'off for both'}. "
        f"Load average (1/5/15 min) at the first measurement {loads[0] if loads else '?'}, "
        f"at the last {loads[-1] if loads else '?'}.\n"
    )
    out.append("## authgate vs nginx\n")
    out.append(
        "| configuration | server | req/s median (min–max) | p50 ms | p99 ms | server CPU µs per request "
        "| CPU: server process / its core / load core | authgate/nginx req/s per round | median ratio "
        "| target | nginx/authgate CPU per request (median) |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in summary["vs_nginx"]:
        ratios = ", ".join(f"{x['ratio']:.2f}" for x in row["ratio_per_round"]) or "–"
        med = row["ratio"]["median"] if row["ratio"] else None
        target = row["target"]
        verdict = "–" if target is None or med is None else (f"≥{target} {'met' if med >= target else 'NOT met'}")
        for i, server in enumerate(("nginx", "authgate")):
            s = row["servers"][server]
            out.append(
                f"| {row['label'] if i == 0 else ''} | {server} | {fmt_spread(s['rps'])} | "
                f"{fmt_spread(s['p50_ms'], 2)} | {fmt_spread(s['p99_ms'], 2)} | "
                f"{fmt_spread(s['server_cpu_us_per_request'])} | {cpu(s)} | "
                f"{ratios if i == 1 else ''} | {fmt(med, 2) if i == 1 else ''} | {verdict if i == 1 else ''} | "
                f"{fmt(row['cpu_ratio']['median'], 2) if i == 1 and row['cpu_ratio'] else ''} |"
            )
    if summary["cache"]:
        out.append(f"\n## authgate caches on vs off ({meta.get('cache_tokens')} distinct tokens, fake API)\n")
        out.append(
            "Each round starts a fresh authgate, warms it up for "
            f"{meta.get('cache_warmup_s')} s (every token used at least once), then measures. "
            "Load generator: wrk (rotating the tokens). API calls are counted by the fake API server.\n"
        )
        out.append(
            "| caches | req/s median (min–max) | p50 ms | p99 ms | API calls / 1000 requests "
            "(TokenReview + SAR) | of which TokenReview | calls during warm-up | authgate CPU µs per request "
            "| CPU: authgate / load core |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for row in summary["cache"]:
            out.append(
                f"| {row['cache']} | {fmt_spread(row['rps'])} | {fmt_spread(row['p50_ms'], 2)} | "
                f"{fmt_spread(row['p99_ms'], 2)} | {fmt_spread(row['api_calls_per_1000'], 1)} | "
                f"{fmt_spread(row['api_token_reviews_per_1000'], 1)} | {fmt_spread(row['warmup_api_calls'])} | "
                f"{fmt_spread(row['server_cpu_us_per_request'])} | {cpu(row)} |"
            )
    notes = [
        "CPU columns are fractions of one CPU during the run (medians): the server process, all busy "
        "time on the server's CPU, and all busy time on the load generator's CPU. A server process well "
        "below 1.0 while the load CPU is near 1.0 means the load generator (with the upstream) was the "
        "limit; the server's CPU µs per request does not depend on that.",
    ]
    noisy = [
        f"round {r['round']} {r['config']} {r['server']} ({r['m']['server_core_other']:.2f})"
        for r in runs
        if r["phase"] == "run" and r["m"].get("server_core_other", 0) > OTHER_LOAD_WARN
    ]
    if noisy:
        notes.append(
            f"Busy time on the server's CPU outside the server process above {OTHER_LOAD_WARN} of a CPU "
            "(other processes were probably running there): " + ", ".join(noisy)
        )
    for row in summary["vs_nginx"]:
        for server in ("nginx", "authgate"):
            f = row["servers"][server]["tls_resumed_fraction"]
            if f and row["config"] == "handshake":
                notes.append(f"{server} resumed {f['median'] * 100:.0f}% of the TLS sessions in the handshake runs.")
    if meta.get("tls_nginx"):
        notes.append(f"TLS with nginx: `{meta['tls_nginx']}`")
        notes.append(f"TLS with authgate: `{meta['tls_authgate']}`")
    if problems:
        notes.append("**Problems:** " + "; ".join(problems))
    if notes:
        out.append("\n## Notes\n")
        out.extend(f"- {n}" for n in notes)
    return "\n".join(out) + "\n"


def nice_ceiling(x):
    """A round number (1, 1.2, 1.6, 2, ... 8 x 10^k) at least x, so that 4 grid steps stay round."""
    if x <= 0:
        return 1
    k = 10 ** (len(str(int(x))) - 1) if x >= 1 else 10 ** -(len(f"{x:.10f}".split(".")[1]) - len(f"{x:.10f}".split(".")[1].lstrip("0")) + 1)
    for m in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10):
        if m * k >= x:
            return m * k
    return 10 * k


def svg(meta, summary):
    """Two grouped bar charts: req/s and p99 latency, with min–max whiskers."""
    groups = []
    for row in summary["vs_nginx"]:
        groups.append(
            (SHORT.get(row["config"], row["config"]),
             [("nginx", row["servers"]["nginx"]), ("authgate", row["servers"]["authgate"])])
        )
    if summary["cache"]:
        groups.append(("caches on/off", [(f"cache {r['cache']}", r) for r in summary["cache"]]))
    colors = {"nginx": "#8c8c8c", "authgate": "#2b6cb0", "cache on": "#2f855a", "cache off": "#c05621"}
    panel_w, top, bottom, gap = 480, 60, 90, 90
    width, height = 80 + 2 * panel_w + gap + 20, 460
    plot_h = height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">'
        f'{html.escape("authgate vs nginx, " + str(meta.get("date")) + (" (smoke)" if meta.get("smoke") else ""))}'
        "</text>",
    ]

    def panel(x0, key, title, unit, digits):
        vals = [s[key]["max"] for _, bars in groups for _, s in bars if s.get(key)]
        vmax = nice_ceiling(max(vals) * 1.1) if vals else 1
        parts.append(f'<text x="{x0 + panel_w / 2}" y="{top - 18}" text-anchor="middle" font-size="13">'
                     f"{html.escape(title)}</text>")
        parts.append(f'<line x1="{x0}" y1="{top + plot_h}" x2="{x0 + panel_w}" y2="{top + plot_h}" stroke="black"/>')
        for i in range(5):
            v = vmax * i / 4
            y = top + plot_h - plot_h * i / 4
            parts.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + panel_w}" y2="{y}" stroke="#e2e2e2"/>')
            parts.append(f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end">{fmt(v, digits)}</text>')
        parts.append(f'<text x="{x0 - 48}" y="{top + plot_h / 2}" text-anchor="middle" '
                     f'transform="rotate(-90 {x0 - 48} {top + plot_h / 2})">{html.escape(unit)}</text>')
        n = max(1, len(groups))
        gw = panel_w / n
        for gi, (label, bars) in enumerate(groups):
            bw = gw * 0.7 / max(1, len(bars))
            gx = x0 + gi * gw + gw * 0.15
            for bi, (name, s) in enumerate(bars):
                st = s.get(key)
                if not st:
                    continue
                x = gx + bi * bw
                h = plot_h * st["median"] / vmax
                y = top + plot_h - h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                             f'fill="{colors.get(name, "#555")}"><title>{html.escape(name)}: '
                             f'{fmt(st["median"], digits)}</title></rect>')
                ylo = top + plot_h - plot_h * st["min"] / vmax
                yhi = top + plot_h - plot_h * st["max"] / vmax
                cx = x + (bw - 2) / 2
                parts.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" stroke="black"/>')
                parts.append(f'<text x="{cx:.1f}" y="{yhi - 4:.1f}" text-anchor="middle" font-size="9">'
                             f'{fmt(st["median"], digits)}</text>')
            parts.append(f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{top + plot_h + 16}" '
                         f'text-anchor="middle">{html.escape(label)}</text>')

    panel(80, "rps", "throughput (median, whiskers min–max)", "req/s (handshakes/s)", 0)
    panel(80 + panel_w + gap, "p99_ms", "p99 latency (median, whiskers min–max)", "ms", 1)
    lx = 80
    for name, color in colors.items():
        parts.append(f'<rect x="{lx}" y="{height - 30}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{lx + 16}" y="{height - 20}">{html.escape(name)}</text>')
        lx += 120
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True, help="output path without extension")
    args = ap.parse_args()
    with open(args.meta, encoding="utf-8") as f:
        meta = json.load(f)
    runs = []
    with open(args.runs, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    problems = []
    for r in runs:
        r["m"] = parse_run(r, args.raw)
        raw = load_raw(os.path.join(args.raw, r["raw"]))
        if raw is not None and r["tool"] == "oha":
            # Keep the numbers, not oha's histograms.
            raw = {k: raw.get(k) for k in ("summary", "metrics", "latencyPercentiles",
                                           "statusCodeDistribution", "errorDistribution")}
        r["raw_output"] = raw
        if r["phase"] == "run" and r["m"].get("problem"):
            problems.append(f"round {r['round']} {r['config']} {r['server']}: {r['m']['problem']}")
    summary = summarise(runs)
    result = {"meta": meta, "summary": summary, "runs": runs, "problems": problems}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    md = markdown(meta, summary, runs, problems)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(md)
    with open(args.out + ".svg", "w", encoding="utf-8") as f:
        f.write(svg(meta, summary))
    sys.stdout.write(md)
    if problems:
        sys.stderr.write("bench: problems: " + "; ".join(problems) + "\n")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
