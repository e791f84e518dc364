//! A real node, as users run replica-guard: kubelet (built from the same module as the API
//! server), Debian's containerd and runc, the CNI bridge/host-local/loopback plugins, kube-scheduler
//! and kube-proxy — all in one network namespace the suite creates (`rge2e-250`, the node at
//! 198.18.250.2 joined to the machine by a veth pair), where the control plane runs too
//! (`Cluster::start_at`). Pods get addresses from `POD_RANGE` on a bridge inside that namespace;
//! images come from OCI archives built here (`tests/e2e/image.sh`) and imported into containerd:
//! no registry is reached.
//!
//! Pitfalls of these machines (README "The real node"): cgroup v1 (`failCgroupV1: false`,
//! `cgroupfs`, a cgroup root of the suite's own, made in every v1 controller first); no
//! CAP_SYS_RESOURCE for root (containerd's `restrict_oom_score_adj`); `nsenter --net`, not `ip
//! netns exec`.
//!
//! Everything is removed when dropped, also after a failure: the node's processes, every process
//! left in its cgroups (containers) and the runtime's shims, the mounts under its folders, the
//! pods' network namespaces and CNI results, the cgroups (deepest first), then the namespace
//! with its veth and bridge.

use crate::cluster::{Cluster, Placement, Process, in_placement, tail, write};
use crate::pods::Host;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The node's number among the suite's test hosts: 198.18.250.2, namespace `rge2e-250`.
pub const HOST: u8 = 250;
pub const NAME: &str = "rge2e-node";
/// The pods' addresses: on a bridge inside the node's namespace, never routed on the machine.
pub const POD_RANGE: &str = "198.19.0.0/24";
/// The cgroup (in every v1 controller) under which the kubelet puts every pod.
pub const CGROUP_ROOT: &str = "rge2e";
/// containerd's state (its socket): short, for the socket path's length limit.
const STATE: &str = "/run/rge2e-containerd";
/// The image the chart runs (its default repository and the chart's appVersion), and the pause image.
pub const PAUSE_IMAGE: &str = "replica-guard.test/pause:catatonit";

/// The node's programs, found next to the control plane's.
pub struct NodeTools {
    pub kubelet: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kube_proxy: PathBuf,
}

impl NodeTools {
    pub fn find(cluster: &Cluster) -> Result<Self, String> {
        let dir = cluster.tools.kube_apiserver.parent().unwrap().to_path_buf();
        let tools = Self {
            kubelet: dir.join("kubelet"),
            kube_scheduler: dir.join("kube-scheduler"),
            kube_proxy: dir.join("kube-proxy"),
        };
        for path in [&tools.kubelet, &tools.kube_scheduler, &tools.kube_proxy] {
            if !path.exists() {
                return Err(format!(
                    "{} is missing: the real node needs kubelet, kube-scheduler and kube-proxy of Kubernetes {} (`bash tests/e2e/install-tools.sh kube {}` builds them when tests/e2e/kube/{}/tools.go lists them)",
                    path.display(),
                    cluster.tools.minor,
                    cluster.tools.minor,
                    cluster.tools.minor
                ));
            }
        }
        for program in ["containerd", "ctr", "runc", "nsenter", "iptables"] {
            if which(program).is_none() {
                return Err(format!(
                    "{program} is missing: `bash tests/e2e/install-tools.sh kube` installs the node's Debian packages"
                ));
            }
        }
        Ok(tools)
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.exists())
}

/// The node's network: created before the control plane, which runs inside it.
pub fn network() -> Result<(Host, Placement), String> {
    crate::pods::check_test_range_is_free()?;
    let host = Host::create(HOST)?;
    let placement = Placement { netns: host.netns.clone(), address: host.address };
    Ok((host, placement))
}

/// A running node. Dropped before the control plane.
pub struct Node {
    dir: PathBuf,
    processes: Vec<Process>,
    netns_before: BTreeSet<String>,
    run_containerd_existed: bool,
    /// The CNI library's cache of results (`/var/lib/cni`), and when the node started.
    var_lib_cni_existed: bool,
    started: std::time::SystemTime,
}

impl Node {
    /// Starts containerd (importing `images`), the kubelet, kube-scheduler and kube-proxy, and
    /// waits until the node is Ready and schedulable.
    pub fn start(cluster: &Cluster, images: &[PathBuf]) -> Result<Self, String> {
        let tools = NodeTools::find(cluster)?;
        let placement = cluster.placement.clone().ok_or("the node needs a control plane in its namespace")?;
        let dir = cluster.dir.join("node");
        let mut node = Self {
            dir: dir.clone(),
            processes: vec![],
            netns_before: netns_list(),
            run_containerd_existed: Path::new("/run/containerd").exists(),
            var_lib_cni_existed: Path::new("/var/lib/cni").exists(),
            started: std::time::SystemTime::now(),
        };
        make_cgroup_root()?;
        let p = |f: &str| dir.join(f).display().to_string();

        // containerd: CRI with our pause image, runc with cgroupfs, CNI from Debian's plugins.
        write(
            &dir.join("containerd.toml"),
            &format!(
                r#"version = 2
root = "{root}"
state = "{STATE}"
[grpc]
  address = "{STATE}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
                root = p("containerd"),
                cni = p("cni"),
            ),
        );
        write(
            &dir.join("cni/10-rge2e.conflist"),
            &format!(
                r#"{{"cniVersion": "0.4.0", "name": "rge2e", "plugins": [
  {{"type": "bridge", "bridge": "rge2e0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{POD_RANGE}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}], "dataDir": "{}"}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}"#,
                p("cni-ipam")
            ),
        );
        node.processes.push(Process::spawn(
            "containerd",
            in_placement(&cluster.placement, Path::new("/usr/bin/containerd"))
                .args(["--config", &p("containerd.toml")]),
            &dir.join("containerd.log"),
        ));
        node.wait(Duration::from_secs(30), "containerd's socket", || {
            Path::new(&format!("{STATE}/containerd.sock")).exists()
        })?;
        for image in images {
            let out = Command::new("ctr")
                .args(["--address", &format!("{STATE}/containerd.sock"), "-n", "k8s.io", "images", "import"])
                .arg(image)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("ctr images import {}: {}", image.display(), String::from_utf8_lossy(&out.stderr)));
            }
        }

        // The kubelet: a client certificate of its node, a serving certificate for its address.
        let (cert, key) = cluster.pki.sign(&[], Some((&format!("system:node:{NAME}"), "system:masters")));
        write(&dir.join("pki/kubelet-client.crt"), &cert);
        write(&dir.join("pki/kubelet-client.key"), &key);
        let (cert, key) = cluster.pki.sign(&[&placement.address.to_string(), NAME], None);
        write(&dir.join("pki/kubelet.crt"), &cert);
        write(&dir.join("pki/kubelet.key"), &key);
        write(
            &dir.join("kubelet.kubeconfig"),
            &format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: e2e, cluster: {{server: 'https://{}', certificate-authority: '{}'}}}}]\nusers: [{{name: kubelet, user: {{client-certificate: '{}', client-key: '{}'}}}}]\ncontexts: [{{name: kubelet, context: {{cluster: e2e, user: kubelet}}}}]\ncurrent-context: kubelet\n",
                cluster.api,
                cluster.dir.join("pki/ca.crt").display(),
                p("pki/kubelet-client.crt"),
                p("pki/kubelet-client.key")
            ),
        );
        write(&dir.join("resolv.conf"), "");
        write(
            &dir.join("kubelet.yaml"),
            &format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: 10250
readOnlyPort: 0
healthzPort: 0
containerRuntimeEndpoint: unix://{STATE}/containerd.sock
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP_ROOT}
failSwapOn: false
makeIPTablesUtilChains: false
resolvConf: {resolv}
tlsCertFile: {tls_crt}
tlsPrivateKeyFile: {tls_key}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
"#,
                address = placement.address,
                resolv = p("resolv.conf"),
                tls_crt = p("pki/kubelet.crt"),
                tls_key = p("pki/kubelet.key"),
                ca = cluster.dir.join("pki/ca.crt").display(),
            ),
        );
        node.processes.push(Process::spawn(
            "kubelet",
            in_placement(&cluster.placement, &tools.kubelet).args([
                &format!("--config={}", p("kubelet.yaml")),
                &format!("--kubeconfig={}", p("kubelet.kubeconfig")),
                &format!("--root-dir={}", p("kubelet")),
                &format!("--cert-dir={}", p("kubelet-pki")),
                &format!("--hostname-override={NAME}"),
                &format!("--node-ip={}", placement.address),
                "--v=1",
            ]),
            &dir.join("kubelet.log"),
        ));
        let controller_manager = cluster.dir.join("controller-manager.kubeconfig").display().to_string();
        node.processes.push(Process::spawn(
            "kube-scheduler",
            in_placement(&cluster.placement, &tools.kube_scheduler).args([
                &format!("--kubeconfig={controller_manager}"),
                &format!("--authentication-kubeconfig={controller_manager}"),
                &format!("--authorization-kubeconfig={controller_manager}"),
                "--leader-elect=false",
                "--secure-port=0",
            ]),
            &dir.join("kube-scheduler.log"),
        ));
        write(
            &dir.join("kube-proxy.yaml"),
            &format!(
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclientConnection: {{kubeconfig: {controller_manager}}}\nmode: iptables\nhostnameOverride: {NAME}\nbindAddress: {address}\nclusterCIDR: {POD_RANGE}\nhealthzBindAddress: ''\nmetricsBindAddress: ''\nconntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}\niptables: {{localhostNodePorts: false}}\n",
                address = placement.address
            ),
        );
        node.processes.push(Process::spawn(
            "kube-proxy",
            in_placement(&cluster.placement, &tools.kube_proxy).args([&format!("--config={}", p("kube-proxy.yaml"))]),
            &dir.join("kube-proxy.log"),
        ));
        let started = Instant::now();
        node.wait(Duration::from_secs(90), "the node Ready and schedulable", || {
            let ran = cluster.kubectl(
                "admin",
                &[
                    "get",
                    "node",
                    NAME,
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.taints}"#,
                ],
            );
            ran.ok && ran.stdout.trim() == "True"
        })?;
        eprintln!(
            "e2e: node {NAME} Ready and schedulable {:.1} s after the kubelet started",
            started.elapsed().as_secs_f64()
        );
        Ok(node)
    }

    /// Waits (bounded, every 200 ms) for `ready`; an error names what and the logs' ends.
    fn wait(&mut self, limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(dead) = self.processes.iter_mut().find_map(|p| (!p.is_running()).then_some(p)) {
                let log = self.dir.join(format!("{}.log", dead.name));
                return Err(format!(
                    "{} exited while waiting for {what}; its log {}:\n{}",
                    dead.name,
                    log.display(),
                    tail(&log, 30)
                ));
            }
            if ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let logs: Vec<String> = self
            .processes
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name, tail(&self.dir.join(format!("{}.log", p.name)), 15)))
            .collect();
        Err(format!("no {what} within {limit:?}:\n{}", logs.join("\n")))
    }

    /// The kernel's count of a container's memory (`memory.usage_in_bytes` and `max_usage_in_bytes`
    /// of its cgroup), found by the pod's uid: (now, peak).
    pub fn pod_memory(pod_uid: &str) -> Option<(u64, u64)> {
        let uid = pod_uid.replace('-', "_");
        let base = Path::new("/sys/fs/cgroup/memory").join(CGROUP_ROOT);
        let pod = find_dir(&base, &format!("pod{pod_uid}")).or_else(|| find_dir(&base, &format!("pod{uid}")))?;
        let read = |f: &str| std::fs::read_to_string(pod.join(f)).ok()?.trim().parse().ok();
        Some((read("memory.usage_in_bytes")?, read("memory.max_usage_in_bytes")?))
    }
}

/// The folder named `name` somewhere below `base`.
fn find_dir(base: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(base).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() == name {
                return Some(path);
            }
            if let Some(found) = find_dir(&path, name) {
                return Some(found);
            }
        }
    }
    None
}

/// The cgroup v1 controllers mounted under /sys/fs/cgroup (cpu, memory, pids, ..., name=systemd).
fn controllers() -> Vec<PathBuf> {
    hierarchies(&["cgroup"])
}

/// Where cgroup hierarchies of type `kinds` are mounted (`cgroup`: the v1 controllers; `cgroup2`: the
/// unified hierarchy a hybrid host mounts too, where runc mirrors every pod's cgroup).
fn hierarchies(kinds: &[&str]) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && kinds.contains(&f[2])).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// The kubelet's cgroup root in every v1 controller (cpuset's cpus and mems copied in: a new
/// cpuset cgroup has none and refuses tasks).
fn make_cgroup_root() -> Result<(), String> {
    for controller in controllers() {
        let dir = controller.join(CGROUP_ROOT);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = std::fs::read_to_string(controller.join(file)) {
                std::fs::write(dir.join(file), value.trim())
                    .map_err(|e| format!("{}: {e}", dir.join(file).display()))?;
            }
        }
    }
    Ok(())
}

fn netns_list() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The pids in `cgroup` and below.
fn pids_in(cgroup: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for entry in std::fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            pids_in(&entry.path(), out);
        }
    }
}

/// Removes `cgroup`'s children, deepest first, then itself.
fn remove_cgroup(cgroup: &Path) {
    for entry in std::fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            remove_cgroup(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(cgroup);
}

/// The runtime's shims: processes whose command line names our containerd's socket.
fn shims() -> Vec<i32> {
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("containerd-shim") && cmdline.contains(STATE) {
            pids.push(pid);
        }
    }
    pids
}

/// Kills every process in the node's cgroups and the runtime's shims, unmounts what `ours` says
/// is the node's (and containerd's state), removes the pods' network namespaces not in
/// `netns_before` and the node's cgroups, deepest first.
fn clean(ours: impl Fn(&str) -> bool, netns_before: &BTreeSet<String>) {
    for _ in 0..20 {
        let mut pids = vec![];
        for controller in controllers() {
            pids_in(&controller.join(CGROUP_ROOT), &mut pids);
        }
        pids.extend(shims());
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on a pid we found in our own cgroups or our runtime's shims.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Mounts under the node's folders (the kubelet's volumes and self bind mount, containerd's
    // snapshots and sandbox files), deepest first.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounted: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| ours(m) || m.starts_with(STATE))
        .collect();
    mounted.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounted {
        let _ = Command::new("umount").args(["-l", &mount]).status();
    }
    // The pods' network namespaces the runtime made and did not remove.
    for netns in netns_list().difference(netns_before) {
        if netns.starts_with("cni-") {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
    // Every hierarchy, the unified one of a hybrid host included (runc mirrors the pods there).
    for hierarchy in hierarchies(&["cgroup", "cgroup2"]) {
        remove_cgroup(&hierarchy.join(CGROUP_ROOT));
    }
}

/// What a killed run left: its containers, shims, mounts, cgroups and runtime state.
pub fn remove_leftovers() {
    // (Network namespaces are left alone: which `cni-` ones were ours is not known any more.)
    clean(|mount| mount.contains("/replica-guard-e2e-") && mount.contains("/node/"), &netns_list());
    let _ = std::fs::remove_dir_all(STATE);
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet first (it would restart what is killed), then every container and shim,
        // then containerd.
        while let Some(p) = self.processes.pop() {
            if p.name != "containerd" {
                drop(p);
            } else {
                self.processes.insert(0, p);
                break;
            }
        }
        self.processes.clear();
        clean(|mount| mount.starts_with(&self.dir.display().to_string()), &self.netns_before);
        let _ = std::fs::remove_dir_all(STATE);
        if !self.run_containerd_existed {
            let _ = std::fs::remove_dir_all("/run/containerd");
        }
        // The CNI results of our pods (the runtime keeps them until a sandbox is torn down).
        if !self.var_lib_cni_existed {
            let _ = std::fs::remove_dir_all("/var/lib/cni");
        } else {
            for entry in std::fs::read_dir("/var/lib/cni/results").into_iter().flatten().flatten() {
                let ours = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= self.started);
                if ours {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
