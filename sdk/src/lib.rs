//! Write Tessera plugins (connectors, segment rules, channels) as WebAssembly components.
//!
//! A plugin implements one trait and exports it with one macro:
//!
//! ```
//! use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};
//! use tessera_sdk::Connector;
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
//!         let user = request.body_text().unwrap_or("anonymous").to_string();
//!         Ok(vec![Event::track(format!("hello-{user}"), "Said Hello", ContactRef::user(user))])
//!     }
//! }
//!
//! tessera_sdk::export_connector!(Hello);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`); the
//! `.wasm` is a component for the contract `tessera:cx@0.2.0` (`contract = "0.2"` in its
//! plugin.toml). Under plain `cargo test` the same code runs natively against
//! [`testing::Harness`]; segment rules run through [`testing::describe`],
//! [`testing::evaluate`] and [`testing::decide`] as the host would call them.
//!
//! A segment rule written for contract 0.1 ([`SegmentRule`], [`export_segment_rule!`]) still
//! builds, as a 0.1 component (`contract = "0.1"`); new rules implement [`Rule`] and export it
//! with [`export_rule!`].
//!
//! # Layout
//!
//! - [`Connector`], [`Rule`], [`Channel`] (`plugin.rs`): one trait per plugin kind, with
//!   defaults for everything optional; [`export_connector!`], [`export_rule!`] and
//!   [`export_channel!`] (below) turn an implementation into the component's exports.
//!   [`SegmentRule`] and [`export_segment_rule!`] are the 0.1 segment rule.
//! - [`condition`]: conditions on a JSON object's fields (traits, event properties):
//!   equals, not equals, exists, greater/less than, contains, in a list, before/after a
//!   date, combined with all/any/not; parsed from rule parameters with errors that point
//!   at the bad spot. [`time`]: RFC 3339 timestamps to Unix milliseconds.
//! - [`types`]: the contract's records and variants with small constructors
//!   (`Event::track`, `ContactRef::user`, `SendError::retryable`, ...).
//! - Host imports: [`config`] (operator-set config and secrets), [`kv`] (a private
//!   key-value namespace) and [`log`] (structured logs).
//! - Helpers: [`json`] (parsing bodies, reading fields, building payloads), [`hmac`]
//!   (constant-time signature checks, hex and base64), [`signature`] (timestamped
//!   `t=...,v1=...` webhook signatures and the `secret`/`tolerance_secs` config they use),
//!   [`hash`] (SHA-256), [`http`] (an outbound client over `wasi:http`), [`segment`]
//!   (Segment-style event objects read into [`types::Event`]s, for connectors that take them).
//! - [`testing`] (native builds only): the in-memory host that config, kv, log and http
//!   talk to outside a component, and `expect_*` helpers that unwrap an expected error.
//! - `bindings.rs`: the generated bindings, hidden; plugins never need them. `v0_1.rs`:
//!   contract 0.1's rule input converted into this crate's types.
#![deny(missing_docs)]

extern crate self as tessera_sdk;

#[doc(hidden)]
pub mod bindings;

pub mod condition;
pub mod config;
pub mod hash;
pub mod hmac;
pub mod http;
pub mod json;
pub mod kv;
pub mod log;
mod plugin;
pub mod segment;
pub mod signature;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;
pub mod types;
mod v0_1;

pub use plugin::{Channel, Connector, Rule, SegmentRule};
pub use serde_json;

#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{ChannelExport, ConnectorExport, RuleExport, SegmentRuleExport};
    pub use wit_bindgen;
}

/// Exports a type implementing [`Connector`] as this component's connector.
///
/// Use it once, at the crate root: `tessera_sdk::export_connector!(MyConnector);`.
/// Outside `wasm32` it only checks that the type implements the trait.
#[macro_export]
macro_rules! export_connector {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TesseraExport = $crate::__private::ConnectorExport<$plugin>;
            $crate::bindings::connector::export_connector_kind!(
                TesseraExport with_types_in $crate::bindings::connector
            );
            $crate::bindings::self_test::export_self_test_kind!(
                TesseraExport with_types_in $crate::bindings::self_test
            );
        };
        const _: fn() = || {
            fn implements_connector<T: $crate::Connector>() {}
            implements_connector::<$plugin>();
        };
    };
}

/// Exports a type implementing [`Rule`] as this component's segment rule (contract 0.2).
///
/// Use it once, at the crate root: `tessera_sdk::export_rule!(MyRule);`.
/// Outside `wasm32` it only checks that the type implements the trait.
#[macro_export]
macro_rules! export_rule {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TesseraExport = $crate::__private::RuleExport<$plugin>;
            $crate::bindings::segment_rule::export_segment_rule_kind!(
                TesseraExport with_types_in $crate::bindings::segment_rule
            );
            $crate::bindings::self_test::export_self_test_kind!(
                TesseraExport with_types_in $crate::bindings::self_test
            );
        };
        const _: fn() = || {
            fn implements_rule<T: $crate::Rule>() {}
            implements_rule::<$plugin>();
        };
    };
}

/// Exports a type implementing [`SegmentRule`] as this component's segment rule, under
/// contract 0.1 (`contract = "0.1"` in plugin.toml). New rules use [`export_rule!`].
///
/// Use it once, at the crate root: `tessera_sdk::export_segment_rule!(MyRule);`.
/// Outside `wasm32` it only checks that the type implements the trait.
#[macro_export]
macro_rules! export_segment_rule {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TesseraExport = $crate::__private::SegmentRuleExport<$plugin>;
            $crate::bindings::rule_v0_1::export_segment_rule_v0_1_kind!(
                TesseraExport with_types_in $crate::bindings::rule_v0_1
            );
            $crate::bindings::self_test_v0_1::export_self_test_v0_1_kind!(
                TesseraExport with_types_in $crate::bindings::self_test_v0_1
            );
        };
        const _: fn() = || {
            fn implements_segment_rule<T: $crate::SegmentRule>() {}
            implements_segment_rule::<$plugin>();
        };
    };
}

/// Exports a type implementing [`Channel`] as this component's channel adapter.
///
/// Use it once, at the crate root: `tessera_sdk::export_channel!(MyChannel);`.
/// Outside `wasm32` it only checks that the type implements the trait.
#[macro_export]
macro_rules! export_channel {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type TesseraExport = $crate::__private::ChannelExport<$plugin>;
            $crate::bindings::channel::export_channel_kind!(
                TesseraExport with_types_in $crate::bindings::channel
            );
            $crate::bindings::self_test::export_self_test_kind!(
                TesseraExport with_types_in $crate::bindings::self_test
            );
        };
        const _: fn() = || {
            fn implements_channel<T: $crate::Channel>() {}
            implements_channel::<$plugin>();
        };
    };
}
