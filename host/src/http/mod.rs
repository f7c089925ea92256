//! The HTTP API (axum): one module per resource, each exporting a `router()`, merged here.

mod auth;
mod body;
mod client_config;
mod contacts;
mod deliveries;
mod error;
mod health;
mod journeys;
mod messages;
pub mod metrics;
mod plugins;
mod segments;
mod sources;
mod tracking;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use error::{ApiError, TrackingError};

use crate::ingest::{Ingest, Intake, Poller, RawWebhooks, Sources};
use crate::journeys::Journeys;
use crate::outbox::Outbox;
use crate::plugins::PluginRegistry;
use crate::profiles::Profiles;
use crate::segments::Segments;

/// Largest plugin upload (component plus manifest), bytes.
pub const MAX_UPLOAD_BYTES: usize = 32 << 20;
/// Largest JSON body on other routes, bytes.
pub const MAX_JSON_BYTES: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The plugin slots.
    pub registry: Arc<PluginRegistry>,
    /// sha256 hex of the admin key.
    pub admin_key_hash: Arc<str>,
    /// Set once start-up work (bundled plugins) is done.
    pub ready: Arc<AtomicBool>,
    /// The ingest stage.
    pub ingest: Arc<Ingest>,
    /// Tracking sources and write keys.
    pub sources: Sources,
    /// Contact profiles.
    pub profiles: Profiles,
    /// Retained raw webhook requests, for replay.
    pub raw_webhooks: RawWebhooks,
    /// Connectors' way into the event log (webhooks and replays).
    pub intake: Intake,
    /// Pull connectors' polling (run by `Server::run`).
    pub poller: Arc<Poller>,
    /// Segment definitions and memberships (the stage is run by `Server::run`).
    pub segments: Segments,
    /// Journey definitions and runs (the stage is run by `Server::run`).
    pub journeys: Journeys,
    /// Messages to deliver.
    pub outbox: Outbox,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let admin = plugins::router()
        .merge(sources::router())
        .merge(contacts::router())
        .merge(segments::router())
        .merge(journeys::router())
        .merge(deliveries::router())
        .merge(messages::router())
        .merge(webhooks::admin_router())
        .merge(metrics::router())
        .merge(health::admin_router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    Router::new()
        .merge(health::router())
        .merge(tracking::router())
        .merge(client_config::router())
        .merge(webhooks::router())
        .merge(admin)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(state)
}
