//! The `replica-guard audit` output, of one cluster or many (`--context`, `--all-contexts`).
//! JSON is a stable, documented schema (README "Auditing what runs"): `apiVersion`,
//! `workloads[]` (each naming its cluster), `summary` over all, and `clusters[]` with each
//! cluster's own summary or why it could not be audited; absent values are `null`, never missing.

use super::pricing::Pricing;
use super::status::{Judged, Status};
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row<'a> {
    /// The kubeconfig context audited, or `cluster.name` (null when neither is known).
    pub cluster: Option<&'a str>,
    pub namespace: &'a str,
    pub deployment: &'a str,
    pub replicas: i32,
    pub hpa: Option<&'a str>,
    pub hpa_max_replicas: Option<i32>,
    pub registered_max_replicas: Option<i32>,
    pub scope: Option<&'static str>,
    pub mode: Option<&'static str>,
    pub status: &'static str,
    pub monthly_cost: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub workloads: usize,
    pub within: usize,
    pub out_of_bounds: usize,
    pub ratchet_only: usize,
    pub over: usize,
    pub unregistered: usize,
}

impl Summary {
    fn count(&mut self, status: Status) {
        self.workloads += 1;
        match status {
            Status::Within => self.within += 1,
            Status::OutOfBounds => self.out_of_bounds += 1,
            Status::RatchetOnly => self.ratchet_only += 1,
            Status::Over => self.over += 1,
            Status::Unregistered => self.unregistered += 1,
        }
    }

    fn line(&self) -> String {
        format!(
            "{} workloads: {} over, {} ratchet-only, {} unregistered, {} out of platform bounds, {} within",
            self.workloads, self.over, self.ratchet_only, self.unregistered, self.out_of_bounds, self.within
        )
    }
}

/// One cluster's audit: its workloads judged, or why it could not be read.
pub struct Audited {
    pub cluster: Option<String>,
    pub judged: Result<Vec<Judged>, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary<'a> {
    pub name: Option<&'a str>,
    /// Why the cluster could not be audited (null when it was).
    pub error: Option<&'a str>,
    pub summary: Option<Summary>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report<'a> {
    pub api_version: &'static str,
    pub workloads: Vec<Row<'a>>,
    pub summary: Summary,
    pub clusters: Vec<ClusterSummary<'a>>,
}

impl<'a> Report<'a> {
    pub fn new(audited: &'a [Audited], pricing: Option<&Pricing>) -> Self {
        let mut summary = Summary::default();
        let mut workloads = vec![];
        let mut clusters = vec![];
        for a in audited {
            let cluster = a.cluster.as_deref();
            let judged = match &a.judged {
                Ok(judged) => judged,
                Err(why) => {
                    clusters.push(ClusterSummary { name: cluster, error: Some(why), summary: None });
                    continue;
                }
            };
            let mut own = Summary::default();
            for j in judged {
                own.count(j.status);
                summary.count(j.status);
                workloads.push(Self::row(cluster, j, pricing));
            }
            clusters.push(ClusterSummary { name: cluster, error: None, summary: Some(own) });
        }
        Self { api_version: "replica-guard.io/audit/v1", workloads, summary, clusters }
    }

    fn row(cluster: Option<&'a str>, j: &'a Judged, pricing: Option<&Pricing>) -> Row<'a> {
        let w = &j.workload;
        let max = j.limit.as_ref().map(|l| l.max_replicas);
        Row {
            cluster,
            namespace: &w.namespace,
            deployment: &w.deployment,
            replicas: w.replicas,
            hpa: w.hpa.as_ref().map(|(name, _)| name.as_str()),
            hpa_max_replicas: w.hpa.as_ref().map(|(_, max)| *max),
            registered_max_replicas: max,
            scope: j.limit.as_ref().map(|l| l.scope.as_str()),
            mode: j.mode.map(|m| m.as_str()),
            status: j.status.as_str(),
            monthly_cost: pricing
                .zip(max)
                .map(|(p, max)| (p.monthly(w.cpu_requests, w.memory_requests_gib, max) * 100.0).round() / 100.0),
        }
    }

    /// More than one cluster asked for: the table gets a CLUSTER column and a line per cluster.
    fn many(&self) -> bool {
        self.clusters.len() > 1
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn csv(&self) -> String {
        let mut out = String::from(
            "namespace,deployment,replicas,hpa,hpaMaxReplicas,registeredMaxReplicas,scope,mode,status,monthlyCost,cluster\n",
        );
        for r in &self.workloads {
            let mut cells = self.cells(r);
            cells.push(r.cluster.unwrap_or_default().to_string());
            out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// An aligned table, as kubectl prints one, then a one-line summary.
    pub fn table(&self) -> String {
        let mut header = vec![
            "NAMESPACE",
            "DEPLOYMENT",
            "REPLICAS",
            "HPA",
            "HPA-MAX",
            "REGISTERED",
            "SCOPE",
            "MODE",
            "STATUS",
            "COST/MONTH",
        ];
        let mut rows: Vec<Vec<String>> = self.workloads.iter().map(|r| self.cells(r)).collect();
        if self.many() {
            header.insert(0, "CLUSTER");
            for (row, r) in rows.iter_mut().zip(&self.workloads) {
                row.insert(0, r.cluster.unwrap_or_default().to_string());
            }
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join("   ").trim_end().to_string() + "\n"
        };
        let mut out = line(header.to_vec());
        for r in &rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        out.push('\n');
        if self.many() {
            for c in &self.clusters {
                let name = c.name.unwrap_or("(unnamed)");
                match (&c.summary, c.error) {
                    (Some(s), _) => out.push_str(&format!("{name}: {}\n", s.line())),
                    (None, why) => out.push_str(&format!("{name}: could not be audited: {}\n", why.unwrap_or(""))),
                }
            }
            out.push_str("all clusters: ");
        }
        out.push_str(&self.summary.line());
        out.push('\n');
        out
    }

    fn cells(&self, r: &Row<'_>) -> Vec<String> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        vec![
            r.namespace.to_string(),
            r.deployment.to_string(),
            r.replicas.to_string(),
            opt(r.hpa.map(str::to_string)),
            opt(r.hpa_max_replicas.map(|v| v.to_string())),
            opt(r.registered_max_replicas.map(|v| v.to_string())),
            opt(r.scope.map(str::to_string)),
            opt(r.mode.map(str::to_string)),
            r.status.to_string(),
            opt(r.monthly_cost.map(|c| format!("{c:.2}"))),
        ]
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}
