//! The `replica-guard audit` output. JSON is a stable, documented schema (README "Auditing what
//! runs"): `apiVersion`, `workloads[]` and `summary`; absent values are `null`, never missing.

use super::pricing::Pricing;
use super::status::{Judged, Status};
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row<'a> {
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report<'a> {
    pub api_version: &'static str,
    pub workloads: Vec<Row<'a>>,
    pub summary: Summary,
}

impl<'a> Report<'a> {
    pub fn new(judged: &'a [Judged], pricing: Option<&Pricing>) -> Self {
        let mut summary = Summary { workloads: judged.len(), ..Summary::default() };
        let workloads = judged
            .iter()
            .map(|j| {
                let w = &j.workload;
                match j.status {
                    Status::Within => summary.within += 1,
                    Status::OutOfBounds => summary.out_of_bounds += 1,
                    Status::RatchetOnly => summary.ratchet_only += 1,
                    Status::Over => summary.over += 1,
                    Status::Unregistered => summary.unregistered += 1,
                }
                let max = j.limit.as_ref().map(|l| l.max_replicas);
                Row {
                    namespace: &w.namespace,
                    deployment: &w.deployment,
                    replicas: w.replicas,
                    hpa: w.hpa.as_ref().map(|(name, _)| name.as_str()),
                    hpa_max_replicas: w.hpa.as_ref().map(|(_, max)| *max),
                    registered_max_replicas: max,
                    scope: j.limit.as_ref().map(|l| l.scope.as_str()),
                    mode: j.mode.map(|m| m.as_str()),
                    status: j.status.as_str(),
                    monthly_cost: pricing.zip(max).map(|(p, max)| {
                        (p.monthly(w.cpu_requests, w.memory_requests_gib, max) * 100.0).round() / 100.0
                    }),
                }
            })
            .collect();
        Self { api_version: "replica-guard.io/audit/v1", workloads, summary }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn csv(&self) -> String {
        let mut out = String::from(
            "namespace,deployment,replicas,hpa,hpaMaxReplicas,registeredMaxReplicas,scope,mode,status,monthlyCost\n",
        );
        for r in &self.workloads {
            let cells = self.cells(r);
            out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// An aligned table, as kubectl prints one, then a one-line summary.
    pub fn table(&self) -> String {
        let header = [
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
        let rows: Vec<Vec<String>> = self.workloads.iter().map(|r| self.cells(r)).collect();
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
        let s = &self.summary;
        out.push_str(&format!(
            "\n{} workloads: {} over, {} ratchet-only, {} unregistered, {} out of platform bounds, {} within\n",
            s.workloads, s.over, s.ratchet_only, s.unregistered, s.out_of_bounds, s.within
        ));
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
