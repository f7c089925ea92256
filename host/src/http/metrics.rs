//! `GET /metrics`: Prometheus text exposition of the process's metrics (per plugin version:
//! calls, failures by cause, call duration histogram, peak linear memory; the event log's
//! last sequence and how far the profile stage has applied it).

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Call duration buckets, seconds: 50 µs to 30 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
    30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls reuse it). Call before
/// plugins load: their metric handles are resolved when a version is prepared.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    &DURATION_BUCKETS,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    metrics::describe_gauge!(
                        "tessera_event_log_last_seq",
                        "Sequence of the last durable event in the event log."
                    );
                    metrics::describe_gauge!(
                        "tessera_profiles_applied_seq",
                        "Sequence of the last logged event applied to profiles."
                    );
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!("metrics recorder not installed: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// The metrics route (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("tessera_event_log_last_seq").set(state.ingest.log().last_seq() as f64);
    if let Ok(applied) = state.profiles.applied_seq() {
        metrics::gauge!("tessera_profiles_applied_seq").set(applied as f64);
    }
    let body = install().map_or_else(String::new, |h| {
        h.run_upkeep();
        h.render()
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
