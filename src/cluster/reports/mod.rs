//! The policy reports the cluster view keeps: one report per namespace, in the OpenReports API or
//! the wg-policy PolicyReport API (`audit.reports`), written each pass where the CRD is installed
//! (asked every pass: it may come later) for Policy Reporter and other report readers. The objects
//! themselves, and how they are written: `policy_report`.

pub mod policy_report;

use super::view::{Pass, Subscriber};
use crate::config::ReportsConfig;
use crate::limits::BoxFuture;
use policy_report::ReportApi;
use serde_json::Value;
use std::collections::HashMap;

pub struct Reports {
    client: kube::Client,
    wanted: ReportsConfig,
    /// `cluster.name`, carried by the reports.
    cluster: Option<String>,
    /// What was written, per API and namespace: what the next pass updates or removes.
    written: HashMap<ReportApi, HashMap<String, Value>>,
}

impl Reports {
    pub fn new(client: kube::Client, wanted: ReportsConfig, cluster: Option<String>) -> Self {
        Self { client, wanted, cluster, written: HashMap::new() }
    }

    async fn write(&mut self, pass: &Pass<'_>) {
        let apis = policy_report::targets(&self.client, self.wanted).await;
        // Switched to the other API (not merely a failed discovery, which finds neither).
        let dropped: Vec<_> =
            self.written.keys().filter(|api| !apis.is_empty() && !apis.contains(api)).copied().collect();
        for api in dropped {
            policy_report::remove(&self.client, api, self.written.remove(&api).unwrap_or_default()).await;
        }
        if apis.is_empty() {
            return;
        }
        let cluster = self.cluster.as_deref();
        let wanted = policy_report::reports(pass.judged, cluster);
        for api in apis {
            let written = self.written.remove(&api).unwrap_or_default();
            let written = policy_report::write(&self.client, api, cluster, wanted.clone(), written).await;
            self.written.insert(api, written);
        }
    }
}

impl Subscriber for Reports {
    fn name(&self) -> &'static str {
        "policy reports"
    }

    fn pass<'a>(&'a mut self, pass: &'a Pass<'a>) -> BoxFuture<'a, ()> {
        Box::pin(self.write(pass))
    }
}
