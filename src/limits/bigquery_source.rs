//! The BigQuery snapshot source: runs the configured query for `sync.rs` through the REST API —
//! `jobs.query` (POST `…/projects/{project}/queries`), then `jobs.getQueryResults` (GET
//! `…/queries/{jobId}`) while the job is not complete and for every further `pageToken`. Rows
//! arrive as `{"f": [{"v": "team-a"}, {"v": "4"}, …]}` in the order of `schema.fields`, every
//! value a string (INT64 included) or null.

use super::RegistryError;
use super::entry::{self, EntryBudget, Fields};
use super::store::Revision;
use super::sync::{ListRegistry, Listed, Listing};
use super::transport::{Auth, ClientError, RemoteJson, https_client, percent_encode};
use super::{BoxFuture, Scope};
use crate::config::BigQueryRegistryConfig;
use hyper::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Polls of an incomplete job and pages of results, at most (the sync's timeout comes first).
const MAX_REQUESTS: usize = 10_000;
/// How long one request asks BigQuery to wait for the job before answering `jobComplete: false`.
const WAIT_MS: u64 = 10_000;

pub struct BigQueryLister {
    remote: RemoteJson,
    base: String,
    project: String,
    query: String,
    location: Option<String>,
    page_size: u32,
    namespace_default: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Results {
    #[serde(default)]
    job_complete: bool,
    #[serde(default)]
    job_reference: Option<JobReference>,
    #[serde(default)]
    schema: Option<Schema>,
    #[serde(default)]
    rows: Vec<Row>,
    #[serde(default)]
    page_token: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct JobReference {
    job_id: String,
    #[serde(default)]
    location: Option<String>,
}

#[derive(Deserialize)]
struct Schema {
    fields: Vec<Field>,
}

#[derive(Deserialize)]
struct Field {
    name: String,
}

#[derive(Deserialize)]
struct Row {
    f: Vec<Cell>,
}

#[derive(Deserialize)]
struct Cell {
    v: Value,
}

impl BigQueryLister {
    pub fn new(config: &BigQueryRegistryConfig) -> Result<Self, ClientError> {
        Ok(Self {
            remote: RemoteJson {
                client: https_client(config.ca_file.as_deref(), Duration::from_secs(5))?,
                auth: Auth::from_config(&config.auth),
            },
            base: config.url.trim_end_matches('/').to_string(),
            project: config.project.clone(),
            query: config.query.clone(),
            location: config.location.clone(),
            page_size: config.page_size,
            namespace_default: config.namespace_default.clone(),
        })
    }

    /// One request; its answer is at most what `page_size` rows can take (a row of six cells at
    /// their longest, `limits::entry`, is under 1 KiB) and is decoded off the async runtime.
    async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Results, RegistryError> {
        let max_bytes = self.page_size as usize * 1024 + 64 * 1024;
        let bytes =
            self.remote.send_bounded(method, url, body, max_bytes).await.map_err(|e| RegistryError::at(what, e))?;
        let what = what.to_string();
        tokio::task::spawn_blocking(move || {
            serde_json::from_slice(&bytes)
                .map_err(|e| RegistryError::Decode(format!("{what}: not a BigQuery query response: {e}")))
        })
        .await
        .map_err(|e| RegistryError::Decode(format!("the decoding task failed: {e}")))?
    }

    async fn list_all(&self, mut budget: EntryBudget) -> Result<Listing, RegistryError> {
        let mut body =
            json!({"query": self.query, "useLegacySql": false, "maxResults": self.page_size, "timeoutMs": WAIT_MS});
        if let Some(location) = &self.location {
            body["location"] = json!(location);
        }
        let url = format!("{}/projects/{}/queries", self.base, self.project);
        let mut results = self.request(Method::POST, &url, Some(&body), "jobs.query").await?;
        let job = results
            .job_reference
            .clone()
            .ok_or_else(|| RegistryError::Decode("jobs.query: the answer has no jobReference".into()))?;
        let mut columns: Option<Vec<String>> = None;
        let mut entries = vec![];
        let mut page = 1;
        for _ in 0..MAX_REQUESTS {
            if results.job_complete {
                if columns.is_none() {
                    let schema = results
                        .schema
                        .as_ref()
                        .ok_or_else(|| RegistryError::Decode("the query results have no schema".into()))?;
                    columns = Some(schema.fields.iter().map(|f| f.name.to_lowercase()).collect());
                }
                let names = columns.as_deref().unwrap_or_default();
                for (i, row) in results.rows.iter().enumerate() {
                    budget.take()?;
                    entries.push(self.entry(names, row, page, i + 1)?);
                }
                let Some(token) = results.page_token.take().filter(|t| !t.is_empty()) else {
                    // The job that read the table names the state read.
                    return Ok(Listing { entries, revision: Revision::now(format!("bigquery-job/{}", job.job_id)) });
                };
                page += 1;
                results = self.get_results(&job, Some(&token), page).await?;
            } else {
                results = self.get_results(&job, None, page).await?;
            }
        }
        Err(RegistryError::Timeout(format!("the job did not finish within {MAX_REQUESTS} requests")))
    }

    /// `jobs.getQueryResults`: the next page, or (without a token) the job's state.
    async fn get_results(
        &self,
        job: &JobReference,
        token: Option<&str>,
        page: usize,
    ) -> Result<Results, RegistryError> {
        let mut url = format!(
            "{}/projects/{}/queries/{}?maxResults={}&timeoutMs={WAIT_MS}",
            self.base,
            self.project,
            percent_encode(&job.job_id),
            self.page_size
        );
        if let Some(location) = job.location.as_ref().or(self.location.as_ref()) {
            url.push_str(&format!("&location={}", percent_encode(location)));
        }
        if let Some(token) = token {
            url.push_str(&format!("&pageToken={}", percent_encode(token)));
        }
        self.request(Method::GET, &url, None, &format!("jobs.getQueryResults, page {page}")).await
    }

    /// One row as an entry; an error names the page, the row and the column.
    fn entry(&self, names: &[String], row: &Row, page: usize, number: usize) -> Result<Listed, RegistryError> {
        let place = format!("page {page}, row {number}");
        let cell = |column: &str| -> Option<&Value> {
            names.iter().position(|n| n == column).and_then(|i| row.f.get(i)).map(|c| &c.v).filter(|v| !v.is_null())
        };
        let at = |column: &str, problem: String| RegistryError::Entry {
            place: format!("{place}: column {column}"),
            problem,
        };
        let text = |column: &str| -> Result<Option<String>, RegistryError> {
            match cell(column) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(at(column, format!("expected a string, got {other}"))),
            }
        };
        let integer = |column: &str| -> Result<Option<i64>, RegistryError> {
            match text(column)? {
                None => Ok(None),
                Some(s) => s.parse().map(Some).map_err(|_| at(column, format!("{s:?} is not a whole number"))),
            }
        };
        let namespace =
            text("namespace")?.filter(|n| !n.is_empty()).ok_or_else(|| at("namespace", "missing".into()))?;
        let deployment = text("deployment")?.filter(|d| !d.is_empty() && *d != self.namespace_default);
        let column_error = |e: entry::EntryError| {
            let column = match e.field {
                "maxReplicas" => "max_replicas",
                "minReplicas" => "min_replicas",
                other => other,
            };
            at(column, e.problem)
        };
        entry::check_names(&namespace, deployment.as_deref()).map_err(column_error)?;
        let max = integer("max_replicas")?.ok_or_else(|| at("max_replicas", "missing".into()))?;
        let mode =
            text("mode")?.filter(|m| !m.is_empty()).as_deref().map(entry::mode).transpose().map_err(column_error)?;
        let owner = text("owner")?.as_deref().map(entry::owner).transpose().map_err(column_error)?.flatten();
        let scope = if deployment.is_some() { Scope::Deployment } else { Scope::NamespaceDefault };
        let limit = Fields { max_replicas: max, min_replicas: integer("min_replicas")?, mode, owner }
            .limit(scope)
            .map_err(column_error)?;
        Ok(Listed { place, namespace, deployment, limit })
    }
}

impl ListRegistry for BigQueryLister {
    fn list(&self, budget: EntryBudget) -> BoxFuture<'_, Result<Listing, RegistryError>> {
        Box::pin(self.list_all(budget))
    }
}
