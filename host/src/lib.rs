//! Tessera's host: a self-hosted orchestration layer whose vendor-specific blocks are
//! sandboxed WebAssembly components that an operator can swap at runtime.
//!
//! # Layout
//! - [`http`]: the HTTP API (axum); one module per resource, errors mapped to statuses in one file.
//! - [`ingest`]: Segment-compatible tracking calls and connector events into the durable log.
//! - [`profiles`]: identity resolution, merges, traits and counters, derived from the log;
//!   a change feed of where each event landed, for the stages after it.
//! - [`segments`]: segment definitions and memberships, decided by rule plugins as the
//!   change feed moves, on recheck timers and by recomputes; membership changes go back
//!   into the log as events.
//! - [`journeys`]: journey definitions (versioned) and durable runs: triggers from the
//!   change feed, waits on timers and events, branches, trait updates through the log.
//! - [`outbox`]: messages that journey sends queue, once per idempotency key (not sent yet).
//! - [`plugins`]: manifests, versions, slots (live version behind `arc-swap`), breaker, the
//!   registry of operator actions (upload, lifecycle, audit, API views), call inputs and
//!   outcomes as data, the local sandbox.
//! - [`runtime`]: everything wasmtime: engine, sandbox, host imports, outbound HTTP policy.
//! - [`store`]: persistence as bytes: the event log file and the storage engine (sled, or memory for tests) every stage keeps its records in.
//! - [`clock`], [`digest`]: the wall clock in Unix milliseconds, sha256 in hex.
//! - [`tasks`]: background work per plugin, isolated so that a panic disables it, not the host.
//! - [`server`]: assembles the above from a [`server::ServerConfig`] and serves.
//!
//! Data flows one way: HTTP -> ingest -> profiles -> segments -> journeys -> outbox ->
//! channels. Plugins never see the store; they get only what the host hands them.

pub mod clock;
pub mod digest;
pub mod http;
pub mod ingest;
pub mod journeys;
pub mod outbox;
pub mod plugins;
pub mod profiles;
pub mod runtime;
pub mod segments;
pub mod server;
pub mod store;
pub mod tasks;
