//! A real control plane on 127.0.0.1, made for the suite: etcd, kube-apiserver and
//! kube-controller-manager of the Kubernetes minor the suite runs against (`run.sh --kube`; the
//! controller manager runs the garbage collector and the namespace controller, enough for
//! `--cascade=foreground` and namespace deletion, and the clusterrole-aggregation controller, which
//! fills the `edit` and `admin` roles; no EndpointSlice controller, the harness keeps the chart
//! Service's EndpointSlice itself). Its PKI, users and RBAC are made here; the binaries come from
//! `tests/e2e/install-tools.sh` (cached under ~/.cache/replica-guard-tools).
//!
//! Users, by client certificate (CN is the user, O the group): `admin` (system:masters),
//! `alice@example.com` (team-a-devs), `bob@example.com` (platform-admins). Team members get the
//! built-in `edit` ClusterRole in each story namespace, as a platform grants it.

pub use crate::common::pki::Pki;
pub use crate::common::process::Process;
use rcgen::KeyPair;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The service range the API server allocates ClusterIPs from: part of the benchmarking range
/// (198.18.0.0/15), never routed here; nothing is sent to it.
pub const SERVICE_RANGE: &str = "198.19.255.0/24";

/// Where the installed tools are.
#[derive(Clone)]
pub struct Tools {
    /// The Kubernetes minor they are of (`1.37`).
    pub minor: String,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    /// Prometheus (Debian's), for the story that scrapes the chart's pods.
    pub prometheus: PathBuf,
}

impl Tools {
    /// The tools `tests/e2e/install-tools.sh` installs, for the minor in `REPLICA_GUARD_KUBE`
    /// (what `run.sh --kube` sets; default the newest build module); a missing one is an error
    /// that says how to install it, never a skip.
    pub fn find() -> Result<Self, String> {
        let dir = std::env::var_os("REPLICA_GUARD_TOOLS")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/replica-guard-tools")))
            .ok_or("neither REPLICA_GUARD_TOOLS nor HOME is set")?;
        let minor = match std::env::var("REPLICA_GUARD_KUBE") {
            Ok(minor) => minor,
            Err(_) => newest_minor()?,
        };
        let kube = dir.join(format!("kube-{minor}"));
        let tools = Self {
            kube_apiserver: kube.join("kube-apiserver"),
            kube_controller_manager: kube.join("kube-controller-manager"),
            etcd: dir.join("etcd/etcd"),
            kubectl: dir.join("kubectl/kubectl"),
            helm: dir.join("helm/helm"),
            prometheus: dir.join("prometheus/prometheus"),
            minor,
        };
        let all = [&tools.kube_apiserver, &tools.kube_controller_manager, &tools.etcd, &tools.kubectl, &tools.helm];
        for path in all.into_iter().chain([&tools.prometheus]) {
            if !path.exists() {
                return Err(format!(
                    "{} is missing: run `bash tests/e2e/install-tools.sh kube {}` (it builds kube-apiserver from the Go module proxy, about 5 minutes once per machine and version)",
                    path.display(),
                    tools.minor
                ));
            }
        }
        Ok(tools)
    }

    /// The version `kube-apiserver --version` reports (`v1.37.2`), as `helm --kube-version` takes it.
    pub fn server_version(&self) -> String {
        let said = Command::new(&self.kube_apiserver)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        said.trim_start_matches("Kubernetes ").to_string()
    }
}

/// The newest Kubernetes minor with a build module under `tests/e2e/kube/`.
fn newest_minor() -> Result<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/kube");
    let mut minors: Vec<(u32, u32, String)> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let (major, minor) = name.split_once('.')?;
            Some((major.parse().ok()?, minor.parse().ok()?, name))
        })
        .collect();
    minors.sort();
    minors.pop().map(|(_, _, name)| name).ok_or_else(|| format!("no build module under {}", dir.display()))
}

/// What the controller manager runs on a node: Deployments, ReplicaSets, EndpointSlices, service
/// accounts and their tokens, the CA ConfigMap of projected tokens, PodDisruptionBudgets, node
/// taints (a new node is tainted not-ready until this controller sees it Ready), pod GC, and what
/// the host cluster runs.
pub const NODE_CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,clusterrole-aggregation-controller,deployment-controller,replicaset-controller,endpointslice-controller,endpoints-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,disruption-controller,node-lifecycle-controller,pod-garbage-collector-controller,taint-eviction-controller";

/// `program`, started inside the placement's network namespace when there is one (`nsenter`
/// execs it, so the process is the program itself; `ip netns exec` would remount /sys and hide
/// the cgroup v1 mounts a kubelet needs).
pub fn in_placement(placement: &Option<Placement>, program: &Path) -> Command {
    match placement {
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{}", p.netns)).arg("--").arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Where the control plane runs: on 127.0.0.1 (the default), or inside a network namespace of the
/// suite at a node's address (`crate::node`: the kubelet, its pods and kube-proxy reach it there).
#[derive(Clone)]
pub struct Placement {
    /// The network namespace (`/run/netns/NAME`); every process is started in it with `nsenter`.
    pub netns: String,
    pub address: std::net::Ipv4Addr,
}

/// The running control plane.
pub struct Cluster {
    pub tools: Tools,
    pub dir: PathBuf,
    pub api: SocketAddr,
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    /// The CA of the client certificate the API server presents to every webhook that asks for
    /// one (`AdmissionConfiguration` `kubeConfigFile`, user `*`; common name `kube-apiserver`):
    /// what a webhook's `server.tls.clientAuth.caFile` trusts.
    pub webhook_client_ca: String,
    /// `None`: on 127.0.0.1.
    pub placement: Option<Placement>,
    etcd_url: String,
    /// Behind a lock so that a scenario (which borrows the cluster) can restart the API server.
    processes: Mutex<Vec<Process>>,
    _keep: Option<tempfile::TempDir>,
}

/// What a command printed, and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(output: Output) -> Self {
        Self {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The `Warning: ` lines kubectl and helm print, without the prefix.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr.lines().filter_map(|l| l.strip_prefix("Warning: ").map(str::to_string)).collect()
    }

    /// Panics with everything printed unless the command succeeded.
    pub fn success(self) -> Self {
        assert!(self.ok, "command failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    pub fn failure(self) -> Self {
        assert!(!self.ok, "command succeeded but should not have:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

impl Cluster {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the API server is
    /// ready; an error says which part did not start and where its log is.
    pub fn start(tools: Tools) -> Result<Self, String> {
        Self::start_at(tools, None)
    }

    /// `start`, in `placement`'s network namespace when given: etcd and the API server then listen
    /// on its address (fixed ports: the namespace is new), the API server keeps the `kubernetes`
    /// Service's endpoints and reaches kubelets, and the controller manager runs what a node's
    /// workloads need (`NODE_CONTROLLERS`).
    pub fn start_at(tools: Tools, placement: Option<Placement>) -> Result<Self, String> {
        let keep = tempfile::Builder::new().prefix("replica-guard-e2e-").tempdir().unwrap();
        let dir = keep.path().to_path_buf();
        let pki = Pki::new("replica-guard e2e CA");
        let (host, etcd_client, etcd_peer, api_port) = match &placement {
            Some(p) => (p.address.to_string(), 2379, 2380, 6443),
            None => ("127.0.0.1".to_string(), free_port(), free_port(), free_port()),
        };
        let etcd_url = format!("http://{host}:{etcd_client}");
        let api = SocketAddr::new(host.parse().unwrap(), api_port);

        let (cert, key) = pki.sign(
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "198.19.255.1",
                &host,
            ],
            None,
        );
        write(&dir.join("pki/ca.crt"), &pki.ca_pem);
        write(&dir.join("pki/apiserver.crt"), &cert);
        write(&dir.join("pki/apiserver.key"), &key);
        let sa_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        write(&dir.join("pki/sa.key"), &sa_key.serialize_pem());
        write(&dir.join("pki/sa.pub"), &sa_key.public_key_pem());
        for (name, user, group) in [
            ("admin", "admin", "system:masters"),
            ("alice", "alice@example.com", "team-a-devs"),
            ("bob", "bob@example.com", "platform-admins"),
            // With one identity for every controller (no per-controller service accounts), the
            // garbage collector needs to read and update every kind: the harness trusts it fully.
            ("controller-manager", "system:kube-controller-manager", "system:masters"),
        ] {
            let (cert, key) = pki.sign(&[], Some((user, group)));
            write(&dir.join(format!("pki/{name}.crt")), &cert);
            write(&dir.join(format!("pki/{name}.key")), &key);
        }
        // The API server's own identity towards webhooks, from a CA of its own (the users' CA
        // must not vouch for the API server).
        let webhook_client = Pki::new("the API server's webhook client CA");
        let (cert, key) = webhook_client.sign(&[], Some(("kube-apiserver", "")));
        write(&dir.join("pki/webhook-client.crt"), &cert);
        write(&dir.join("pki/webhook-client.key"), &key);
        write(
            &dir.join("webhook-client.kubeconfig"),
            &format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    client-certificate: {}\n    client-key: {}\n",
                dir.join("pki/webhook-client.crt").display(),
                dir.join("pki/webhook-client.key").display()
            ),
        );
        write(
            &dir.join("admission.yaml"),
            &format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: ValidatingAdmissionWebhook\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {}\n",
                dir.join("webhook-client.kubeconfig").display()
            ),
        );
        let kubeconfig = dir.join("kubeconfig");
        write(&kubeconfig, &kubeconfig_text(&dir, api, &["admin", "alice", "bob"]));
        write(&dir.join("controller-manager.kubeconfig"), &kubeconfig_text(&dir, api, &["controller-manager"]));

        let mut processes = vec![];
        let p = |f: &str| dir.join(f).display().to_string();
        processes.push(Process::spawn(
            "etcd",
            in_placement(&placement, &tools.etcd).args([
                "--name",
                "e2e",
                "--data-dir",
                &p("etcd"),
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
                "--listen-peer-urls",
                &format!("http://{host}:{etcd_peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://{host}:{etcd_peer}"),
                "--initial-cluster",
                &format!("e2e=http://{host}:{etcd_peer}"),
            ]),
            &dir.join("etcd.log"),
        ));
        let cluster = Self {
            tools,
            dir: dir.clone(),
            api,
            kubeconfig,
            pki,
            webhook_client_ca: webhook_client.ca_pem,
            placement,
            etcd_url,
            processes: Mutex::new(processes),
            _keep: Some(keep),
        };
        cluster.start_apiserver()?;
        cluster.wait_ready(Duration::from_secs(90))?;
        let mut args = vec![
            format!("--kubeconfig={}", dir.join("controller-manager.kubeconfig").display()),
            "--controllers=garbage-collector-controller,namespace-controller,clusterrole-aggregation-controller"
                .to_string(),
            "--leader-elect=false".to_string(),
            "--secure-port=0".to_string(),
            "--use-service-account-credentials=false".to_string(),
        ];
        if cluster.placement.is_some() {
            args[1] = format!("--controllers={NODE_CONTROLLERS}");
            args.push(format!("--root-ca-file={}", p("pki/ca.crt")));
            args.push(format!("--service-account-private-key-file={}", p("pki/sa.key")));
        }
        let cm = Process::spawn(
            "kube-controller-manager",
            in_placement(&cluster.placement, &cluster.tools.kube_controller_manager).args(&args),
            &dir.join("kube-controller-manager.log"),
        );
        cluster.processes.lock().unwrap().push(cm);
        cluster.wait_for_aggregated_roles(Duration::from_secs(60))?;
        cluster.check_alive()?;
        Ok(cluster)
    }

    /// An error naming the control-plane process that exited, with the end of its log.
    pub fn check_alive(&self) -> Result<(), String> {
        match self.processes.lock().unwrap().iter_mut().find_map(|p| (!p.is_running()).then_some(p)) {
            Some(dead) => {
                let log = self.dir.join(format!("{}.log", dead.name));
                Err(format!("{} exited; its log: {}\n{}", dead.name, log.display(), tail(&log, 20)))
            }
            None => Ok(()),
        }
    }

    /// Stops kube-apiserver and starts it again on the same port and storage; waits until ready.
    pub fn restart_apiserver(&self) -> Result<(), String> {
        self.processes.lock().unwrap().retain(|p| p.name != "kube-apiserver");
        self.start_apiserver()?;
        self.wait_ready(Duration::from_secs(90))
    }

    /// Starts kube-apiserver.
    fn start_apiserver(&self) -> Result<(), String> {
        let p = |f: &str| self.dir.join(f).display().to_string();
        let host = self.api.ip().to_string();
        // On a node: real endpoints for the `kubernetes` Service (in-cluster clients reach the API
        // server through it and kube-proxy), service account tokens for pods, and the kubelet's
        // address and a client certificate (logs, the pod proxy).
        let node_args: Vec<String> = match &self.placement {
            Some(_) => vec![
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!("--kubelet-client-certificate={}", p("pki/controller-manager.crt")),
                format!("--kubelet-client-key={}", p("pki/controller-manager.key")),
            ],
            None => vec!["--endpoint-reconciler-type=none".into(), "--disable-admission-plugins=ServiceAccount".into()],
        };
        let process = Process::spawn(
            "kube-apiserver",
            in_placement(&self.placement, &self.tools.kube_apiserver).args(node_args).args([
                &format!("--etcd-servers={}", self.etcd_url),
                &format!("--bind-address={host}"),
                &format!("--advertise-address={host}"),
                &format!("--secure-port={}", self.api.port()),
                &format!("--tls-cert-file={}", p("pki/apiserver.crt")),
                &format!("--tls-private-key-file={}", p("pki/apiserver.key")),
                &format!("--client-ca-file={}", p("pki/ca.crt")),
                &format!("--service-account-key-file={}", p("pki/sa.pub")),
                &format!("--service-account-signing-key-file={}", p("pki/sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                "--authorization-mode=RBAC",
                &format!("--service-cluster-ip-range={SERVICE_RANGE}"),
                // `service:` webhook calls go to the Service's EndpointSlices (no kube-proxy needed).
                "--enable-aggregator-routing=true",
                // A client certificate for every webhook that asks for one.
                &format!("--admission-control-config-file={}", p("admission.yaml")),
            ]),
            &self.dir.join("kube-apiserver.log"),
        );
        self.processes.lock().unwrap().push(process);
        Ok(())
    }

    /// Waits until `/readyz` answers ok.
    pub fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let ran = self.kubectl("admin", &["get", "--raw=/readyz"]);
            if ran.ok && ran.stdout.trim() == "ok" {
                return Ok(());
            }
            if started.elapsed() > limit {
                let log = self.dir.join("kube-apiserver.log");
                return Err(format!(
                    "kube-apiserver not ready within {limit:?} ({}); log {}:\n{}",
                    ran.stderr.trim(),
                    log.display(),
                    tail(&log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// kubectl as `user` (admin, alice, bob).
    pub fn kubectl(&self, user: &str, args: &[&str]) -> Ran {
        self.kubectl_in(user, args, None)
    }

    /// kubectl as `user`, with `stdin` (for `-f -`).
    pub fn kubectl_in(&self, user: &str, args: &[&str], stdin: Option<&str>) -> Ran {
        self.run(
            &self.tools.kubectl,
            &[&["--kubeconfig", &self.kubeconfig.display().to_string(), "--context", user], args].concat(),
            stdin,
        )
    }

    /// A Kubernetes client as `user` (a context of the suite's kubeconfig), with its own
    /// connections (a benchmark's writer keeps one alive).
    pub async fn client(&self, user: &str) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let options = kube::config::KubeConfigOptions { context: Some(user.into()), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// helm as admin.
    pub fn helm(&self, args: &[&str]) -> Ran {
        let kubeconfig = self.kubeconfig.display().to_string();
        self.run(&self.tools.helm, &[&["--kubeconfig", &kubeconfig, "--kube-context", "admin"], args].concat(), None)
    }

    fn run(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut child = Command::new(program)
            .args(args)
            .env("HOME", &self.dir)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        if let Some(text) = stdin {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        Ran::from(child.wait_with_output().unwrap())
    }

    /// `kubectl apply -f -` of `yaml` as `user`, with extra arguments.
    pub fn apply(&self, user: &str, yaml: &str, extra: &[&str]) -> Ran {
        self.kubectl_in(user, &[&["apply", "-f", "-"], extra].concat(), Some(yaml))
    }

    /// A fresh namespace (the namespace controller runs, but tests never wait for deletions),
    /// labelled so that only the webhook configuration of its own story selects it, where the
    /// team members have the built-in `edit` role (filled by the clusterrole-aggregation
    /// controller), as a platform grants a team its namespace.
    pub fn namespace(&self, name: &str) {
        let yaml = format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: {name}, labels: {{replica-guard-e2e: {name}}}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: team-edit, namespace: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: team-a-devs}}
- {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: platform-admins}}
"#
        );
        self.apply("admin", &yaml, &[]).success();
    }

    /// Waits until the clusterrole-aggregation controller has filled `edit` (it lets team members
    /// write Deployments); a controller manager that never does is an error.
    fn wait_for_aggregated_roles(&self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let ran = self.kubectl("admin", &["get", "clusterrole", "edit", "-o", "jsonpath={.rules[*].resources}"]);
            if ran.ok && ran.stdout.contains("deployments") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "the clusterrole-aggregation controller did not fill the edit role within {limit:?}; log:\n{}",
            tail(&self.dir.join("kube-controller-manager.log"), 20)
        ))
    }
}

impl Cluster {
    /// A kubeconfig that authenticates as ServiceAccount `sa` of `namespace` with a token from
    /// the TokenRequest API, as the kubelet projects it into a pod.
    pub fn service_account_kubeconfig(&self, sa: &str, namespace: &str) -> PathBuf {
        let token =
            self.kubectl("admin", &["create", "token", sa, "-n", namespace]).success().stdout.trim().to_string();
        let path = self.dir.join(format!("sa-{namespace}-{sa}.kubeconfig"));
        write(
            &path,
            &format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: e2e, cluster: {{server: 'https://{}', certificate-authority: '{}'}}}}]\nusers: [{{name: sa, user: {{token: {token}}}}}]\ncontexts: [{{name: sa, context: {{cluster: e2e, user: sa, namespace: {namespace}}}}}]\ncurrent-context: sa\n",
                self.api,
                self.dir.join("pki/ca.crt").display()
            ),
        );
        path
    }

    /// Renders the chart into a new `release_ns` with `values`, applies its objects of `kinds`
    /// (its accounts and roles) and returns how many, with a kubeconfig for its ServiceAccount
    /// `sa` (a TokenRequest token): a process run with it has exactly the chart's RBAC.
    pub fn chart_account(&self, release_ns: &str, values: &str, kinds: &[&str], sa: &str) -> (usize, PathBuf) {
        self.kubectl("admin", &["create", "namespace", release_ns]).success();
        let rendered = crate::pods::render_chart(self, release_ns, values);
        let applied = self.apply_kinds(&rendered, kinds);
        let kubeconfig = self.service_account_kubeconfig(sa, release_ns);
        (applied, kubeconfig)
    }

    /// The events.k8s.io Events of namespace `ns` about the object named `name`.
    pub fn events_about(&self, ns: &str, name: &str) -> Vec<serde_json::Value> {
        let ran = self.kubectl("admin", &["get", "events.v1.events.k8s.io", "-n", ns, "-o", "json"]).success();
        let list: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        list["items"].as_array().unwrap().iter().filter(|e| e["regarding"]["name"] == name).cloned().collect()
    }

    /// Applies the objects of `rendered` whose kind is one of `kinds`; returns how many.
    pub fn apply_kinds(&self, rendered: &crate::pods::Rendered, kinds: &[&str]) -> usize {
        let chosen: Vec<String> = rendered
            .objects
            .iter()
            .filter(|o| kinds.contains(&o["kind"].as_str().unwrap_or("")))
            .map(|o| serde_yaml_ng::to_string(o).unwrap())
            .collect();
        self.apply("admin", &chosen.join("---\n"), &[]).success();
        chosen.len()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Controller-manager and API server first, etcd last.
        let processes = self.processes.get_mut().unwrap_or_else(|p| p.into_inner());
        while let Some(p) = processes.pop() {
            drop(p);
        }
        if std::env::var_os("REPLICA_GUARD_E2E_KEEP").is_some() {
            let kept = self._keep.take().map(|d| d.keep());
            eprintln!("e2e: kept {kept:?}");
        }
    }
}

fn kubeconfig_text(dir: &Path, api: SocketAddr, users: &[&str]) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: 'https://{api}', certificate-authority: '{}'}}\nusers:\n",
        dir.join("pki/ca.crt").display()
    );
    for user in users {
        text.push_str(&format!(
            "- name: {user}\n  user: {{client-certificate: '{}', client-key: '{}'}}\n",
            dir.join(format!("pki/{user}.crt")).display(),
            dir.join(format!("pki/{user}.key")).display()
        ));
    }
    text.push_str("contexts:\n");
    for user in users {
        text.push_str(&format!("- name: {user}\n  context: {{cluster: e2e, user: {user}}}\n"));
    }
    text.push_str(&format!("current-context: {}\n", users[0]));
    text
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
