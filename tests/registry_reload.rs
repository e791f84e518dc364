//! The file registry is reloaded while the server runs: an in-place edit, a broken edit (the
//! last good copy stays and the error is counted), and kubelet's symlink swap of a mounted
//! ConfigMap, which writes no file at the watched path.

mod common;

use common::{Protocol, TestServer, fixture};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

fn registry(max: i32) -> String {
    format!("entries:\n  - {{namespace: team-a, deployment: payments-api, maxReplicas: {max}}}\n")
}

/// Waits (bounded) until the redeploy 3 -> 6 gets the wanted answer.
async fn eventually_allowed(server: &TestServer, want: bool) {
    let mut client = server.client(Protocol::Http1).await;
    for _ in 0..100 {
        let response = client.review(fixture("deployment-redeploy-replicas-3-to-6-and-image.json")).await;
        if response["allowed"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the registry change was not picked up within 5 s");
}

#[tokio::test]
async fn edits_apply_and_a_broken_edit_keeps_the_last_good_copy() {
    // The per-entry gauges (an opt-in) show which snapshot is in use.
    let server = TestServer::start_with("mode: enforce", &registry(4), "metrics: {registryEntries: true}").await;
    let path = server.dir.path().join("limits.yaml");
    eventually_allowed(&server, false).await;

    std::fs::write(&path, registry(6)).unwrap();
    eventually_allowed(&server, true).await;
    assert_eq!(
        server.metric("replica_guard_registered_max_replicas{deployment=\"payments-api\",namespace=\"team-a\"}").await,
        6.0
    );

    std::fs::write(&path, "entries:\n  - {namespace: team-a, deployment: payments-api, maxReplicas: -1}\n").unwrap();
    for _ in 0..100 {
        if server.metric("replica_guard_registry_reloads_total{result=\"error\",source=\"file\"}").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.metric("replica_guard_registry_reloads_total{result=\"error\",source=\"file\"}").await >= 1.0);
    // And why: an entry out of bounds, not a file that could not be read.
    assert!(
        server.metric("replica_guard_registry_reload_failures_total{reason=\"entry\",source=\"file\"}").await >= 1.0
    );
    assert_eq!(
        server.metric("replica_guard_registry_reload_failures_total{reason=\"read\",source=\"file\"}").await,
        0.0
    );
    // Still the last good registry (max 6): the redeploy to 6 stays allowed, and the server is ready.
    eventually_allowed(&server, true).await;
    assert_eq!(server.admin_get("/readyz").await.0, 200);

    std::fs::write(&path, registry(4)).unwrap();
    eventually_allowed(&server, false).await;
    server.shutdown().await;
}

/// Writes the layout kubelet uses for a ConfigMap volume: `limits.yaml -> ..data/limits.yaml`,
/// `..data -> ..<version>`, and swaps versions by renaming a new `..data` symlink over the old.
fn kubelet_publish(dir: &Path, version: &str, text: &str) {
    let version_dir = dir.join(version);
    std::fs::create_dir(&version_dir).unwrap();
    std::fs::write(version_dir.join("limits.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test]
async fn kubelet_symlink_swap_is_picked_up() {
    let server = TestServer::start("mode: enforce", &registry(4)).await;
    let dir = server.dir.path().join("mounted");
    std::fs::create_dir(&dir).unwrap();
    kubelet_publish(&dir, "..2026_11_22_01", &registry(4));
    symlink("..data/limits.yaml", dir.join("limits.yaml")).unwrap();
    // Point the server's limits.yaml at the mounted volume, as the chart's mount would.
    let watched = server.dir.path().join("limits.yaml");
    std::fs::remove_file(&watched).unwrap();
    symlink(dir.join("limits.yaml"), &watched).unwrap();
    eventually_allowed(&server, false).await;

    kubelet_publish(&dir, "..2026_11_22_02", &registry(8));
    eventually_allowed(&server, true).await;
    server.shutdown().await;
}
