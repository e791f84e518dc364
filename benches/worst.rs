//! Worst-case bodies for `loadgen worst`: UPDATEs of the redeploy fixture grown to `max` bytes
//! in the way that costs most per byte, so the slowest one bounds what a tenant can make one
//! review cost (the hardening target: under 5 ms of CPU).

use crate::common;
use serde_json::{Value, json};

/// Turns the old and the new object of the fixture into a worst case.
type Shape = dyn Fn(&mut Value, &mut Value);

/// (name, body) for every shape.
fn bodies(max: usize) -> Vec<(&'static str, Vec<u8>)> {
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
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let mut review = base.clone();
            let (mut old, mut new) = (review["request"]["oldObject"].clone(), review["request"]["object"].clone());
            shape(&mut old, &mut new);
            review["request"]["oldObject"] = old;
            review["request"]["object"] = new;
            let body = serde_json::to_vec(&review).unwrap();
            assert!(body.len() <= max, "{name}: {} bytes is over {max}", body.len());
            (name, body)
        })
        .collect()
}

fn deep_chain(depth: usize, leaf: &str) -> Value {
    (0..depth).fold(json!(leaf), |inner, i| json!({format!("l{i}"): inner}))
}

/// CPU time of this thread so far, in microseconds.
fn thread_cpu_us() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

pub fn run(max: usize, rounds: usize) {
    let webhook = crate::in_process_webhook();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut slowest_overall: f64 = 0.0;
    for (name, body) in bodies(max) {
        let mut slowest: f64 = 0.0;
        let mut verdict = String::new();
        for _ in 0..rounds {
            let before = thread_cpu_us();
            let answer = runtime.block_on(webhook.review(&body));
            slowest = slowest.max(thread_cpu_us() - before);
            verdict = match answer {
                Ok(a) if a.response.allowed => "allowed".into(),
                Ok(a) => format!("denied ({} bytes of message)", a.response.result.message.len()),
                Err(e) => format!("400: {e}"),
            };
        }
        slowest_overall = slowest_overall.max(slowest);
        println!(
            "{}",
            json!({"body": name, "bytes": body.len(), "slowest_review_cpu_ms": slowest / 1000.0, "answer": verdict})
        );
    }
    println!("{}", json!({"slowest_review_cpu_ms": slowest_overall / 1000.0, "target_ms": 5.0}));
}
