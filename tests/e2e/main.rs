//! The end-to-end suite: replica-guard under a real kube-apiserver, driven by real kubectl and
//! Helm, asserting on what their users see. Each scenario is a user story of the README.
//!
//! Run by `.ci/run` through `tests/e2e/run.sh` (which installs the control plane first); by hand:
//! `bash tests/e2e/run.sh [FILTER]`. It is not part of plain `cargo test`: it needs the control
//! plane, and fails (never skips) when that cannot start.

#[path = "../common/mod.rs"]
mod common;

mod audit_stories;
mod backstop_stories;
mod capture;
mod chart_stories;
mod check_stories;
mod cluster;
mod events_stories;
mod fresh_limits;
mod latency;
mod node;
mod node_stories;
mod pods;
mod prometheus_story;
mod registry_stories;
mod scale;
mod scope_stories;
mod stories;
mod usage_stories;
mod webhook;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::Instant;

/// One user story: its name (what the test output shows) and the function that plays it.
pub type Scenario = (&'static str, fn(&cluster::Cluster));

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench-latency");
    let bench_scale = args.iter().any(|a| a == "--bench-scale");
    let bench_freshness = args.iter().any(|a| a == "--bench-freshness");
    let bench_node = args.iter().any(|a| a == "--bench-latency-node");
    let capture = args.iter().any(|a| a == "--capture-fixtures");
    let filter: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let tools = match cluster::Tools::find() {
        Ok(tools) => tools,
        Err(e) => {
            eprintln!("e2e: cannot run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    if !(capture || bench || bench_scale || bench_freshness || bench_node) {
        return play_stories(tools, &filter, started);
    }
    // The latency benchmark's rounds and seconds per round.
    let rounds = filter.first().and_then(|n| n.parse().ok()).unwrap_or(3);
    let seconds = filter.get(1).and_then(|n| n.parse().ok()).unwrap_or(5.0);
    if bench_node {
        // The fixed-answer webhook's image beside the chart's, on the real node.
        return match node_stories::Environment::start_with(tools, &[latency::floor_image_arguments()]) {
            Ok(env) => {
                latency::run_on_node(&env.cluster, rounds, seconds);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("e2e: the real node did not start: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if bench_freshness {
        // On the real node: the chart's pods, the registry's writes, the API server's verdicts.
        return match node_stories::Environment::start(tools) {
            Ok(env) => {
                fresh_limits::bench(&env.cluster, filter.first().and_then(|n| n.parse().ok()).unwrap_or(50));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("e2e: the real node did not start: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(cluster) = start_on_127_0_0_1(tools, started) else { return ExitCode::FAILURE };
    if capture {
        capture::write_set(&cluster);
        return ExitCode::SUCCESS;
    }
    if bench_scale {
        scale::run(&cluster, filter.first().and_then(|n| n.parse().ok()).unwrap_or(10_000));
        return ExitCode::SUCCESS;
    }
    if bench {
        latency::run(&cluster, rounds, seconds);
        return ExitCode::SUCCESS;
    }
    ExitCode::SUCCESS
}

/// The user stories: those on the control plane of 127.0.0.1, then those on the real node
/// (`node_stories`, named `node: ...`; their own control plane, inside the node's network
/// namespace), each cluster started only when a chosen story needs it.
fn play_stories(tools: cluster::Tools, filter: &[String], started: Instant) -> ExitCode {
    let scenarios: Vec<Scenario> = [
        stories::all(),
        audit_stories::all(),
        audit_stories::continuous(),
        usage_stories::all(),
        events_stories::all(),
        check_stories::all(),
        capture::all(),
        registry_stories::all(),
        chart_stories::all(),
        backstop_stories::all(),
        scope_stories::all(),
    ]
    .concat();
    let chosen = |list: Vec<Scenario>| -> Vec<Scenario> {
        list.into_iter()
            .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
            .collect()
    };
    let mut on_host = chosen(scenarios);
    let mut on_node = chosen(node_stories::all());
    if !on_node.is_empty() && !node_stories::available(&tools) {
        // Said, not skipped silently: the real node is built for the newest minor only.
        eprintln!(
            "e2e: the {} node stories run on the newest Kubernetes only (tests/e2e/kube/{}/tools.go builds no kubelet)",
            on_node.len(),
            tools.minor
        );
        if filter.iter().any(|f| f.starts_with("node")) {
            return ExitCode::FAILURE;
        }
        on_node.clear();
    }
    if !on_node.is_empty() {
        // Where the real node runs, the stand-in's pods (the binary in a network namespace, the
        // harness playing the kubelet) are retired from what the node stories replay for real.
        let before = on_host.len();
        on_host.retain(|(name, _)| !node_stories::REPLACED_STAND_INS.contains(name));
        if on_host.len() < before {
            eprintln!(
                "e2e: {} stand-in chart stories replaced by the real node's (node_stories::REPLACED_STAND_INS)",
                before - on_host.len()
            );
        }
    }
    let (mut passed, mut failed) = (0, vec![]);
    if !on_host.is_empty() {
        let Some(cluster) = start_on_127_0_0_1(tools.clone(), started) else { return ExitCode::FAILURE };
        play(&cluster, &on_host, &mut passed, &mut failed);
    }
    if !on_node.is_empty() {
        match node_stories::Environment::start(tools) {
            Ok(env) => play(&env.cluster, &on_node, &mut passed, &mut failed),
            Err(e) => {
                eprintln!("e2e: the real node did not start: {e}");
                failed.extend(on_node.iter().map(|(name, _)| *name));
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!("\ne2e: {passed} passed, {} failed ({:.0} s)", failed.len(), started.elapsed().as_secs_f64());
    println!("{passed} passed, {} failed", failed.len());
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The control plane on 127.0.0.1, announced with its version; `None` (said why) when it did not start.
fn start_on_127_0_0_1(tools: cluster::Tools, started: Instant) -> Option<cluster::Cluster> {
    match cluster::Cluster::start(tools) {
        Ok(cluster) => {
            eprintln!(
                "e2e: Kubernetes {} control plane ready at https://{} in {:.1} s",
                cluster.tools.server_version(),
                cluster.api,
                started.elapsed().as_secs_f64()
            );
            Some(cluster)
        }
        Err(e) => {
            eprintln!("e2e: the control plane did not start: {e}");
            None
        }
    }
}

/// Plays `scenarios` on `cluster`, counting.
fn play(cluster: &cluster::Cluster, scenarios: &[Scenario], passed: &mut usize, failed: &mut Vec<&'static str>) {
    for (name, story) in scenarios {
        if let Err(e) = cluster.check_alive() {
            eprintln!("e2e: the control plane broke down: {e}");
            failed.push(*name);
            break;
        }
        let t = Instant::now();
        match std::panic::catch_unwind(AssertUnwindSafe(|| story(cluster))) {
            Ok(()) => {
                *passed += 1;
                println!("test {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed.push(*name);
                println!("test {name} ... FAILED ({:.1} s)", t.elapsed().as_secs_f64());
            }
        }
    }
}
