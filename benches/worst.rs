//! Worst-case bodies for `loadgen worst`: UPDATEs of the redeploy fixture grown to `max` bytes
//! in the way that costs most per byte, so the slowest one bounds what a tenant can make one
//! review cost (the hardening target: under 5 ms of CPU); and the CREATE of each new object.

use crate::common;
use serde_json::{Value, json};

/// Turns the old and the new object of the fixture into a worst case.
type Shape = dyn Fn(&mut Value, &mut Value);

/// (name, body) for every shape: its UPDATE, then the CREATE of its new object.
fn bodies(max: usize) -> Vec<(String, Vec<u8>)> {
    // Each entry is about 24 bytes of JSON; old and new each take half of the body.
    let n = max / 2 / 28;
    let keyed = |prefix: &str, n: usize| -> Value {
        Value::Object((0..n).map(|i| (format!("{prefix}{i:07}"), json!("v"))).collect())
    };
    let containers = |n: usize, tag: &str| -> Value {
        (0..n).map(|i| json!({"name": format!("c{i}"), "image": format!("i:{tag}")})).collect()
    };
    let env = |n: usize, value: &str| -> Value {
        json!([{"name": "api", "image": "a:1", "env": (0..n).map(|i| json!({"name": format!("E{i}"), "value": value})).collect::<Vec<_>>()}])
    };
    let deep = |depth: usize, leaf: &str| -> Value {
        (0..depth).fold(json!(leaf), |inner, _| json!({"a": inner, "b": [inner.clone()]}))
    };
    let shapes: Vec<(&'static str, Box<Shape>)> = vec![
        ("added labels", Box::new(move |_, new| new["metadata"]["labels"] = keyed("k", n * 2))),
        ("added annotations", Box::new(move |_, new| new["metadata"]["annotations"] = keyed("a", n * 2))),
        (
            "pod template labels changed",
            Box::new(move |old, new| {
                old["spec"]["template"]["metadata"]["labels"] = keyed("k", n);
                new["spec"]["template"]["metadata"]["labels"] = keyed("l", n);
            }),
        ),
        (
            "containers, every image changed",
            Box::new(move |old, new| {
                old["spec"]["template"]["spec"]["containers"] = containers(n / 2, "1");
                new["spec"]["template"]["spec"]["containers"] = containers(n / 2, "2");
            }),
        ),
        (
            "env, every value changed",
            Box::new(move |old, new| {
                old["spec"]["template"]["spec"]["containers"] = env(n / 2, "x");
                new["spec"]["template"]["spec"]["containers"] = env(n / 2, "y");
            }),
        ),
        (
            "volumes, all replaced",
            Box::new(move |old, new| {
                let volumes = |tag: &str| -> Value {
                    (0..n / 2).map(|i| json!({"name": format!("v{i}"), "emptyDir": {"medium": tag}})).collect()
                };
                old["spec"]["template"]["spec"]["volumes"] = volumes("");
                new["spec"]["template"]["spec"]["volumes"] = volumes("Memory");
            }),
        ),
        (
            "long array of numbers, shifted by one",
            Box::new(move |old, new| {
                old["spec"]["template"]["spec"]["x"] = (0..n * 3).collect();
                new["spec"]["template"]["spec"]["x"] = (1..n * 3 + 1).collect();
            }),
        ),
        (
            "deep objects (60 levels, doubling), leaf changed",
            Box::new(move |old, new| {
                // Depth is bounded by serde_json's recursion limit (128); `b` doubles the tree per
                // level, so the width is cut to fit the body.
                old["spec"]["template"]["spec"]["x"] = deep(14, "old");
                new["spec"]["template"]["spec"]["x"] = deep(14, "new");
                old["spec"]["y"] = deep_chain(60, "old");
                new["spec"]["y"] = deep_chain(60, "new");
            }),
        ),
    ];
    let base = common::fixture_json("deployment-redeploy-replicas-3-to-6-and-image.json");
    let mut all = vec![];
    for (name, shape) in shapes {
        let mut review = base.clone();
        let (mut old, mut new) = (review["request"]["oldObject"].clone(), review["request"]["object"].clone());
        shape(&mut old, &mut new);
        review["request"]["oldObject"] = old;
        review["request"]["object"] = new;
        let body = serde_json::to_vec(&review).unwrap();
        assert!(body.len() <= max, "{name}: {} bytes is over {max}", body.len());
        all.push((name.to_string(), body));
        review["request"]["operation"] = "CREATE".into();
        review["request"]["oldObject"] = Value::Null;
        all.push((format!("CREATE: {name}"), serde_json::to_vec(&review).unwrap()));
    }
    all
}

fn deep_chain(depth: usize, leaf: &str) -> Value {
    (0..depth).fold(json!(leaf), |inner, i| json!({format!("l{i}"): inner}))
}

/// CPU time of this thread so far, in microseconds (CLOCK_THREAD_CPUTIME_ID: nanosecond
/// resolution, where getrusage moves in 4 ms ticks).
fn thread_cpu_us() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes a whole timespec into the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 * 1e6 + now.tv_nsec as f64 / 1e3
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// For every body: the review's CPU time and a plain `serde_json` parse of the same body into a
/// `Value`, each the median of `rounds`, alternating, and their ratio (the target: at most 3).
pub fn run(max: usize, rounds: usize, only: &str) {
    let webhook = crate::in_process_webhook();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut worst_ratio: f64 = 0.0;
    let mut slowest_overall: f64 = 0.0;
    for (name, body) in bodies(max).into_iter().filter(|(name, _)| name.contains(only)) {
        let (mut review, mut parse) = (vec![], vec![]);
        let mut verdict = String::new();
        for _ in 0..rounds.max(1) {
            let before = thread_cpu_us();
            let value: Value = serde_json::from_slice(&body).unwrap();
            drop(value);
            parse.push(thread_cpu_us() - before);
            let before = thread_cpu_us();
            let answer = runtime.block_on(webhook.review(&body));
            review.push(thread_cpu_us() - before);
            verdict = match answer {
                Ok(a) if a.response.allowed => "allowed".into(),
                Ok(a) => format!("denied ({} bytes of message)", a.response.status.message.len()),
                Err(e) => format!("400: {e}"),
            };
        }
        let (review, parse) = (median(review), median(parse));
        let ratio = review / parse;
        worst_ratio = worst_ratio.max(ratio);
        slowest_overall = slowest_overall.max(review);
        println!(
            "{}",
            json!({"body": name, "bytes": body.len(), "review_cpu_ms": review / 1000.0,
                   "parse_cpu_ms": parse / 1000.0, "review_over_parse": (ratio * 100.0).round() / 100.0, "answer": verdict})
        );
    }
    println!(
        "{}",
        json!({"slowest_review_cpu_ms": slowest_overall / 1000.0, "worst_review_over_parse": (worst_ratio * 100.0).round() / 100.0, "target_ratio": 3.0})
    );
}
