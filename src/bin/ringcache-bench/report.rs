//! The summary of a run, printed as text or as one JSON object.

use crate::args::{Args, Plan};
use crate::run::Summary;

pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn json_number_or_null(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "null".into(),
    }
}

/// The figures both forms of the summary print, worked out once.
struct Figures {
    secs: f64,
    requests: u64,
    ops_per_sec: f64,
    hit_ratio: Option<f64>,
    p50: f64,
    p99: f64,
    p999: f64,
    p9999: f64,
    max_us: f64,
    bench_cpu: Option<f64>,
    server_cpu: Option<f64>,
}

impl Figures {
    fn of(s: &Summary) -> Figures {
        let t = &s.tally;
        let secs = s.elapsed.as_secs_f64();
        let requests = t.requests();
        let per_request = |us: u64| (requests > 0).then(|| us as f64 / requests as f64);
        let q = |quantile: f64| t.latency_ns.value_at_quantile(quantile) as f64 / 1000.0;
        Figures {
            secs,
            requests,
            ops_per_sec: requests as f64 / secs,
            hit_ratio: (t.gets > 0).then(|| t.hits as f64 / t.gets as f64),
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max_us: t.latency_ns.max() as f64 / 1000.0,
            bench_cpu: per_request(s.bench_user_us + s.bench_sys_us),
            server_cpu: s.server_cpu_us.and_then(per_request),
        }
    }
}

/// Prints the summary: as one JSON object with `--json`, as text otherwise.
pub(crate) fn report(plan: &Plan, args: &Args, s: &Summary) {
    let figures = Figures::of(s);
    if args.json {
        print_json(plan, args, s, &figures);
    } else {
        print_text(plan, args, s, &figures);
    }
}

/// The summary as one JSON object on one line.
fn print_json(plan: &Plan, args: &Args, s: &Summary, f: &Figures) {
    let t = &s.tally;
    let Figures {
        secs,
        requests,
        ops_per_sec,
        hit_ratio,
        p50,
        p99,
        p999,
        p9999,
        max_us,
        bench_cpu,
        server_cpu,
    } = *f;
    let routing = if plan.route.is_some() {
        "ketama"
    } else {
        "round-robin"
    };
    println!(
        concat!(
            "{{\"protocol\":\"{:?}\",\"servers\":[{}],\"routing\":\"{}\",\"threads\":{},\"connections\":{},",
            "\"pipeline\":{},\"ratio\":{},\"key_space\":{},\"key_pattern\":\"{:?}\",",
            "\"value_bytes_min\":{},\"value_bytes_max\":{},\"cache_aside\":{},",
            "\"elapsed_secs\":{:.4},\"requests\":{},\"gets\":{},\"sets\":{},\"hits\":{},",
            "\"misses\":{},\"errors\":{},\"ops_per_sec\":{:.1},\"hit_ratio\":{},\"miss_ratio\":{},",
            "\"latency_us\":{{\"p50\":{:.2},\"p99\":{:.2},\"p99_9\":{:.2},\"p99_99\":{:.2},\"max\":{:.2}}},",
            "\"bench_cpu_us_per_request\":{},\"bench_user_secs\":{:.3},\"bench_sys_secs\":{:.3},",
            "\"server_cpu_us_per_request\":{}}}"
        ),
        plan.protocol,
        plan.servers.iter().map(|s| json_string(s)).collect::<Vec<_>>().join(","),
        routing,
        plan.threads,
        plan.connections(),
        plan.pipeline,
        json_string(&args.ratio),
        plan.key_space,
        plan.key_pattern,
        plan.value_min,
        plan.value_max,
        plan.cache_aside,
        secs,
        requests,
        t.gets,
        t.sets,
        t.hits,
        t.misses,
        t.errors,
        ops_per_sec,
        json_number_or_null(hit_ratio),
        json_number_or_null(hit_ratio.map(|h| 1.0 - h)),
        p50,
        p99,
        p999,
        p9999,
        max_us,
        json_number_or_null(bench_cpu),
        s.bench_user_us as f64 / 1e6,
        s.bench_sys_us as f64 / 1e6,
        json_number_or_null(server_cpu),
    );
}

/// The summary as text, for a reader.
fn print_text(plan: &Plan, args: &Args, s: &Summary, f: &Figures) {
    let t = &s.tally;
    let Figures {
        secs,
        requests,
        ops_per_sec,
        hit_ratio,
        p50,
        p99,
        p999,
        p9999,
        max_us,
        bench_cpu,
        server_cpu,
    } = *f;
    let values = if plan.value_min == plan.value_max {
        format!("{} B", plan.value_min)
    } else {
        format!("{}-{} B", plan.value_min, plan.value_max)
    };
    let sockets = if plan.route.is_some() {
        format!(
            " (each {} sockets, routed by ketama)",
            plan.links_per_conn()
        )
    } else {
        String::new()
    };
    println!(
        "{:?} protocol, {} x {} connections{}, pipeline {}, {}, {:?} keys over {}, values {}",
        plan.protocol,
        plan.threads,
        plan.clients,
        sockets,
        plan.pipeline,
        if plan.cache_aside {
            "cache-aside gets".to_string()
        } else {
            format!("set:get {}", args.ratio)
        },
        plan.key_pattern,
        plan.key_space,
        values
    );
    println!(
        "{:.2} s, {} requests ({} gets, {} sets), {} errors",
        secs, requests, t.gets, t.sets, t.errors
    );
    println!("throughput   {ops_per_sec:.0} ops/s");
    match hit_ratio {
        Some(h) => println!(
            "hit ratio    {:.4} ({} hits, {} misses; miss ratio {:.4})",
            h,
            t.hits,
            t.misses,
            1.0 - h
        ),
        None => println!("hit ratio    - (no gets)"),
    }
    println!(
        "latency us   p50 {p50:.1}  p99 {p99:.1}  p99.9 {p999:.1}  p99.99 {p9999:.1}  max {max_us:.1}"
    );
    println!(
        "bench cpu    {} us/request (user {:.2} s, sys {:.2} s)",
        bench_cpu.map_or("-".into(), |v| format!("{v:.3}")),
        s.bench_user_us as f64 / 1e6,
        s.bench_sys_us as f64 / 1e6
    );
    if let Some(v) = server_cpu {
        println!(
            "server cpu   {v:.3} us/request (pids {:?})",
            args.server_pid
        );
    }
}
