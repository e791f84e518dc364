//! The backstop's parameters for a registry of 10,000 entries: the size of the objects `watch`
//! writes (one per namespace) and the time to compute them. `cargo bench --bench backstop`.

use replica_guard::backstop::parameters::parameters;
use replica_guard::decision::policy::Policy;
use replica_guard::limits::file;
use std::time::Instant;

fn registry(namespaces: usize, per_namespace: usize) -> String {
    let mut text = String::from("entries:\n");
    for n in 0..namespaces {
        for d in 0..per_namespace {
            text.push_str(&format!(
                "  - {{namespace: team-{n:04}, deployment: service-{d:05}-api, maxReplicas: {}}}\n",
                2 + d % 7
            ));
        }
        text.push_str(&format!("  - {{namespace: team-{n:04}, maxReplicas: 2}}\n"));
    }
    text
}

fn main() {
    let policy: Policy = serde_yaml_ng::from_str("override: {groups: [platform-admins]}").unwrap();
    for (namespaces, per_namespace) in [(1, 10_000), (100, 100), (10_000, 1)] {
        let table = file::parse(&registry(namespaces, per_namespace), 100_000).unwrap();
        let mut times = vec![];
        let mut params = Default::default();
        for _ in 0..7 {
            let started = Instant::now();
            params = parameters(&table, &policy);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let sizes: Vec<usize> = params.values().map(|spec| serde_json::to_vec(spec).unwrap().len()).collect();
        println!(
            "{namespaces} namespaces x {per_namespace} entries: {} objects, largest spec {} bytes, all {} bytes; computed in {:.2} ms (median of 7)",
            sizes.len(),
            sizes.iter().max().unwrap(),
            sizes.iter().sum::<usize>(),
            times[3]
        );
    }
}
