//! Connector intake, the one path from a connector to the event log: a vendor's webhook (run
//! through the live version, retained for replay when worth keeping), a replay of retained
//! requests, and a polled page's events all end in [`Intake::accept`].

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::raw_webhooks::{PageStart, RawWebhooks};
use super::{Ingest, IngestError, IngestReport, from_connector};
use crate::plugins::{PluginError, PluginRegistry};
use crate::runtime::ConnectorEvent;
use crate::runtime::types::{ConnectorError, HttpRequest};
use crate::store::StoreError;

/// Retained requests a replay holds at once.
const REPLAY_PAGE: usize = 16;
/// Bytes of retained requests (as stored) a replay holds at once, past the first request.
const REPLAY_PAGE_BYTES: u64 = 8 << 20;

/// Why a connector's request stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The plugin could not be called, or its call failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The connector refused the request (bad signature, unreadable, unsupported, upstream).
    #[error("the connector refused the request: {0:?}")]
    Connector(ConnectorError),
    /// The events could not be made durable: nothing was acknowledged.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Retained requests could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Retained requests run again.
    pub replayed: usize,
    /// Events stored for the first time.
    pub accepted: usize,
    /// Events already stored.
    pub duplicates: usize,
    /// Requests the connector still failed on: when they arrived and why.
    pub failures: Vec<Value>,
}

/// Connectors' way into the event log.
#[derive(Clone)]
pub struct Intake {
    registry: Arc<PluginRegistry>,
    ingest: Arc<Ingest>,
    raw: RawWebhooks,
}

/// Whether a request is worth keeping for replay: one the live connector saw and did not
/// refuse as unsigned, or one a live connector could not take because the operator disabled
/// it or its breaker is open (replay is how those are recovered). Nothing is kept for an
/// unknown plugin or a connector that is not live: anyone may post there, nobody checks.
fn worth_keeping(
    outcome: &Result<Result<Vec<ConnectorEvent>, ConnectorError>, PluginError>,
) -> bool {
    match outcome {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => !matches!(e, ConnectorError::Unauthorized(_)),
        Err(PluginError::Call(_) | PluginError::Disabled(_) | PluginError::BreakerOpen { .. }) => {
            true
        }
        Err(_) => false,
    }
}

impl Intake {
    /// Intake through `registry`'s connectors into `ingest`, retaining requests in `raw`.
    pub fn new(registry: Arc<PluginRegistry>, ingest: Arc<Ingest>, raw: RawWebhooks) -> Self {
        Self {
            registry,
            ingest,
            raw,
        }
    }

    /// Stores a connector's events as arriving at `received_at`.
    pub async fn accept(
        &self,
        plugin: &str,
        events: Vec<ConnectorEvent>,
        received_at: OffsetDateTime,
    ) -> Result<IngestReport, IngestError> {
        self.ingest
            .ingest(from_connector(plugin, events, received_at))
            .await
    }

    /// A vendor's webhook request: the live connector verifies and maps it, the request is
    /// retained for replay when worth keeping, and its events are durable before this returns.
    pub async fn webhook(
        &self,
        plugin: &str,
        request: &HttpRequest,
        received_at: OffsetDateTime,
    ) -> Result<IngestReport, IntakeError> {
        let outcome = self.registry.handle_webhook(plugin, request).await;
        if worth_keeping(&outcome)
            && let Err(e) = self.raw.retain(plugin, request, received_at)
        {
            tracing::error!(plugin, "raw webhook not retained: {e}");
        }
        let events = outcome?.map_err(IntakeError::Connector)?;
        Ok(self.accept(plugin, events, received_at).await?)
    }

    /// Runs the connector's live version over its retained requests that arrived at or after
    /// `since_ms`, oldest first, at most `limit`, a page at a time (at most 16 requests or
    /// 8 MiB of them in memory). Events already stored are deduplicated, so replaying twice
    /// stores nothing twice.
    pub async fn replay(
        &self,
        plugin: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<ReplayReport, IntakeError> {
        self.registry.slot(plugin)?;
        let mut report = ReplayReport::default();
        let mut start = PageStart::Since(since_ms);
        while report.replayed < limit {
            let page = self.raw.page(
                plugin,
                &start,
                (limit - report.replayed).min(REPLAY_PAGE),
                REPLAY_PAGE_BYTES,
            )?;
            for raw in &page.requests {
                report.replayed += 1;
                match self
                    .registry
                    .handle_webhook(plugin, &raw.to_request())
                    .await
                {
                    Ok(Ok(events)) => {
                        let stored = self.accept(plugin, events, raw.received_at()).await?;
                        report.accepted += stored.accepted;
                        report.duplicates += stored.duplicates;
                    }
                    Ok(Err(e)) => report
                        .failures
                        .push(json!({ "received_ms": raw.received_ms, "error": e })),
                    Err(e) => report
                        .failures
                        .push(json!({ "received_ms": raw.received_ms, "error": e.to_string() })),
                }
            }
            match page.next {
                Some(next) => start = next,
                None => break,
            }
        }
        Ok(report)
    }
}
