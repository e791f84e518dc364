//! What the kubelet and the endpoints controller would do for the chart's Deployment, done by
//! the harness: each webhook "pod" is the release binary in a network namespace of its own (a
//! veth pair; address 198.18.N.2, the host side 198.18.N.1), run with the rendered container
//! args and the rendered ConfigMap and Secret laid out as kubelet lays out volumes (files behind
//! a `..data` symlink that is swapped on update). The Service's EndpointSlice lists the pods whose
//! `/readyz` answers 200, kept current by a background thread as the EndpointSlice controller
//! would (with `--enable-aggregator-routing` the API server resolves a `service:` webhook through
//! the Service's EndpointSlices).
//!
//! Nothing of the machine's own interfaces or routes is touched: the harness creates its veth
//! pairs and namespaces (named `rge2e…`), and removes them when dropped, also after a failure,
//! and at start removes any left by a run that was killed.

use crate::cluster::{Cluster, Process, write};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PREFIX: &str = "rge2e";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Fails unless 198.18.0.0/15 is free on this machine (no route, no address in it).
pub fn check_test_range_is_free() -> Result<(), String> {
    let routes =
        Command::new("ip").args(["-o", "route", "show", "table", "all"]).output().map_err(|e| e.to_string())?;
    let addrs = Command::new("ip").args(["-o", "addr"]).output().map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&routes.stdout), String::from_utf8_lossy(&addrs.stdout));
    for line in text.lines().filter(|l| l.contains("198.18.") || l.contains("198.19.")) {
        if !line.contains(PREFIX) {
            return Err(format!("198.18.0.0/15 is in use on this machine ({line}); the suite will not touch it"));
        }
    }
    Ok(())
}

/// Removes namespaces and veth pairs a killed run left behind (they carry our prefix).
pub fn remove_leftovers() {
    let out = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    for ns in String::from_utf8_lossy(&out).lines().filter_map(|l| l.split_whitespace().next()) {
        if ns.starts_with(PREFIX) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
    let out = Command::new("ip").args(["-o", "link"]).output().map(|o| o.stdout).unwrap_or_default();
    for link in String::from_utf8_lossy(&out).lines().filter_map(|l| l.split(": ").nth(1)) {
        let name = link.split('@').next().unwrap_or(link);
        if name.starts_with(PREFIX) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

/// A test host: a network namespace joined to the machine by a veth pair.
pub struct Host {
    pub netns: String,
    veth: String,
    pub address: Ipv4Addr,
}

impl Host {
    /// Host number `n` (1..=250): 198.18.n.2 inside, 198.18.n.1 on the machine's side.
    pub fn create(n: u8) -> Result<Self, String> {
        let netns = format!("{PREFIX}-{n}");
        let (veth, peer) = (format!("{PREFIX}{n}h"), format!("{PREFIX}{n}n"));
        let host = Self { netns: netns.clone(), veth: veth.clone(), address: Ipv4Addr::new(198, 18, n, 2) };
        ip(&["netns", "add", &netns])?;
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &netns])?;
        ip(&["addr", "add", &format!("198.18.{n}.1/30"), "dev", &veth])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&["netns", "exec", &netns, "ip", "addr", "add", &format!("198.18.{n}.2/30"), "dev", &peer])?;
        ip(&["netns", "exec", &netns, "ip", "link", "set", &peer, "up"])?;
        ip(&["netns", "exec", &netns, "ip", "link", "set", "lo", "up"])?;
        Ok(host)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting our end of the pair deletes the other; the namespace goes with `netns del`.
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

/// A kubelet-style volume: `..<n>/FILE` with `..data` pointing at the current one, and `FILE`
/// pointing at `..data/FILE`. `update` writes a new version and swaps `..data` atomically, as
/// kubelet does when a Secret or ConfigMap changes.
pub struct Volume {
    pub dir: PathBuf,
    version: Mutex<u32>,
}

impl Volume {
    pub fn new(dir: PathBuf, files: &[(&str, String)]) -> Self {
        let volume = Self { dir, version: Mutex::new(0) };
        volume.update(files);
        volume
    }

    pub fn update(&self, files: &[(&str, String)]) {
        let mut version = self.version.lock().unwrap();
        *version += 1;
        let data = format!("..v{}", *version);
        for (name, text) in files {
            write(&self.dir.join(&data).join(name), text);
            let link = self.dir.join(name);
            if !link.exists() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// The objects `helm template` rendered for the chart, as YAML documents.
pub struct Rendered {
    pub objects: Vec<serde_json::Value>,
}

impl Rendered {
    pub fn find(&self, kind: &str) -> &serde_json::Value {
        self.objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("the chart rendered no {kind}"))
    }
}

/// `helm template` of the chart in namespace `namespace` with `values` (YAML), for the version
/// of the API server the suite runs.
pub fn render_chart(cluster: &Cluster, namespace: &str, values: &str) -> Rendered {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/replica-guard");
    let values_file = cluster.dir.join(format!("values-{namespace}.yaml"));
    // The chart needs the cluster's name while usage records are on (its default).
    let named = values.lines().any(|l| l.starts_with("cluster:"));
    write(&values_file, &if named { values.to_string() } else { format!("cluster: {{name: e2e}}\n{values}") });
    let ran = cluster
        .helm(&[
            "template",
            "rg",
            chart,
            "-n",
            namespace,
            "--kube-version",
            &cluster.tools.server_version(),
            "-f",
            &values_file.display().to_string(),
        ])
        .success();
    let mut objects = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(&ran.stdout) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if !value.is_null() {
            objects.push(value);
        }
    }
    Rendered { objects }
}

/// Applies every rendered object but the Deployments, and waits for the backstop's CRD: the
/// chart installed with no pod running, as when every webhook pod is gone (the webhook
/// configuration points at a Service without endpoints).
pub fn apply_all_but_the_pods(cluster: &Cluster, rendered: &Rendered) {
    let objects: Vec<String> = rendered
        .objects
        .iter()
        .filter(|o| o["kind"] != "Deployment")
        .map(|o| serde_yaml_ng::to_string(o).unwrap())
        .collect();
    cluster.apply("admin", &objects.join("---\n"), &[]).success();
    cluster
        .kubectl(
            "admin",
            &["wait", "--for=condition=Established", "crd/backstoplimits.replica-guard.io", "--timeout=30s"],
        )
        .success();
}

/// One webhook pod: its host, its volumes and its process.
pub struct Pod {
    pub name: String,
    pub host: Host,
    pub tls: Volume,
    process: Process,
    root: PathBuf,
}

impl Pod {
    /// Starts the rendered Deployment's container in a new host, with its volumes read from the
    /// API (the ConfigMaps and Secret the chart created), as the kubelet would.
    pub fn start(cluster: &Cluster, rendered: &Rendered, namespace: &str, n: u8) -> Result<Self, String> {
        let name = format!("pod-{n}");
        let root = cluster.dir.join(&name);
        let host = Host::create(n)?;
        // The webhook's Deployment, not the audit's.
        let deployment = rendered
            .objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && !o["metadata"]["name"].as_str().unwrap_or("").ends_with("-audit"))
            .expect("the chart rendered the webhook's Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let mounts = container["volumeMounts"].as_array().unwrap();
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        let mut tls = None;
        for mount in mounts {
            let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
            let files = volume_files(cluster, namespace, volume);
            let dir = local(&root, mount["mountPath"].as_str().unwrap());
            let files: Vec<(&str, String)> = files.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let files: Vec<(&str, String)> = files
                .into_iter()
                .map(|(k, v)| (k, v.replace("/etc/replica-guard", &root.display().to_string())))
                .collect();
            let created = Volume::new(dir, &files);
            if mount["name"] == "tls" {
                tls = Some(created);
            }
        }
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().replace("/etc/replica-guard", &root.display().to_string()))
            .collect();
        let bin = env!("CARGO_BIN_EXE_replica-guard");
        let process = Process::spawn(
            "replica-guard",
            Command::new("ip").args(["netns", "exec", &host.netns, bin]).args(&args).env("POD_NAMESPACE", namespace),
            &root.join("replica-guard.log"),
        );
        Ok(Self { name, host, tls: tls.ok_or("the chart mounts no tls volume")?, process, root })
    }

    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from((self.host.address, 8080))
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.process_id().to_string()).status();
    }

    /// The replica-guard process (`ip netns exec` execs it, so it is the spawned process).
    fn process_id(&self) -> u32 {
        self.process.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("replica-guard.log")).unwrap_or_default()
    }
}

/// A path of the pod's file system: under the pod's own folder.
fn local(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches("/etc/replica-guard/"))
}

/// The files of a ConfigMap or Secret volume, read from the API.
fn volume_files(cluster: &Cluster, namespace: &str, volume: &serde_json::Value) -> Vec<(String, String)> {
    let (kind, name) = if let Some(cm) = volume["configMap"]["name"].as_str() {
        ("configmap", cm)
    } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
        ("secret", secret)
    } else {
        panic!("unsupported volume {volume}")
    };
    let ran = cluster.kubectl("admin", &["get", kind, name, "-n", namespace, "-o", "json"]).success();
    let object: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let data = object["data"].as_object().cloned().unwrap_or_default();
    data.into_iter()
        .map(|(k, v)| {
            let text = v.as_str().unwrap_or_default().to_string();
            let text = if kind == "secret" {
                use base64::Engine;
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text).unwrap()).unwrap()
            } else {
                text
            };
            (k, text)
        })
        .collect()
}

fn http_status(address: SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)) else { return 0 };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Keeps the Service's EndpointSlice equal to the pods whose /readyz is 200, every `period`, as
/// the EndpointSlice controller does from readiness probes.
pub struct EndpointSliceSync {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub pods: Arc<Mutex<Vec<(String, SocketAddr)>>>,
    /// Every change written: the list of ready addresses, in order.
    pub history: Arc<Mutex<Vec<Vec<String>>>>,
}

impl EndpointSliceSync {
    pub fn start(cluster: &Cluster, namespace: &str, service: &str, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pods: Arc<Mutex<Vec<(String, SocketAddr)>>> = Arc::default();
        let history: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let (kubectl, kubeconfig) = (cluster.tools.kubectl.clone(), cluster.kubeconfig.clone());
        let (namespace, service) = (namespace.to_string(), service.to_string());
        let thread = {
            let (stop, pods, history) = (stop.clone(), pods.clone(), history.clone());
            std::thread::spawn(move || {
                let mut current: Option<BTreeSet<String>> = None;
                // Bounded: a day's worth of periods at most; `stop` ends it long before.
                for _ in 0..(86_400_000 / period.as_millis().max(1)) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let watched = pods.lock().unwrap().clone();
                    let ready: BTreeSet<String> = watched
                        .iter()
                        .filter(|(_, admin)| http_status(*admin, "/readyz") == 200)
                        .map(|(_, admin)| admin.ip().to_string())
                        .collect();
                    if current.as_ref() != Some(&ready) {
                        let yaml = endpoints_yaml(&namespace, &service, &ready);
                        let mut child = Command::new(&kubectl)
                            .args(["--kubeconfig", &kubeconfig.display().to_string(), "apply", "-f", "-"])
                            .stdin(std::process::Stdio::piped())
                            .stdout(std::process::Stdio::null())
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .unwrap();
                        use std::io::Write;
                        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
                        if child.wait().map(|s| s.success()).unwrap_or(false) {
                            history.lock().unwrap().push(ready.iter().cloned().collect());
                            current = Some(ready);
                        }
                    }
                    std::thread::sleep(period);
                }
            })
        };
        Self { stop, thread: Some(thread), pods, history }
    }

    pub fn watch(&self, pod: &Pod) {
        self.pods.lock().unwrap().push((pod.name.clone(), pod.admin()));
    }

    pub fn forget(&self, pod: &Pod) {
        self.pods.lock().unwrap().retain(|(name, _)| *name != pod.name);
    }

    /// Waits until the EndpointSlice lists exactly `count` ready addresses.
    pub fn wait_for(&self, count: usize, limit: Duration) {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if self.history.lock().unwrap().last().is_some_and(|l| l.len() == count) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the EndpointSlice never listed {count} ready pods: {:?}", self.history.lock().unwrap());
    }
}

impl Drop for EndpointSliceSync {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn endpoints_yaml(namespace: &str, service: &str, ready: &BTreeSet<String>) -> String {
    let endpoints: Vec<String> =
        ready.iter().map(|ip| format!("- {{addresses: [\"{ip}\"], conditions: {{ready: true}}}}")).collect();
    let endpoints = if endpoints.is_empty() {
        "endpoints: []".to_string()
    } else {
        format!("endpoints:\n{}", endpoints.join("\n"))
    };
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-e2e\n  namespace: {namespace}\n  labels: {{kubernetes.io/service-name: {service}, endpointslice.kubernetes.io/managed-by: replica-guard-e2e}}\naddressType: IPv4\nports: [{{name: https, port: 8443, protocol: TCP}}, {{name: metrics, port: 8080, protocol: TCP}}]\n{endpoints}\n"
    )
}
