//! End-to-end tests: one binary, one module per topic, each starting real hosts.

mod admin_api;
mod breaker;
mod clients;
mod contacts;
mod cx_flow;
mod delivery;
mod first_run;
mod hostile_guests;
mod journeys;
mod kv;
mod malformed;
mod newcomer;
mod plugin_kinds;
mod polling;
mod published_clients;
mod replay;
mod restart;
mod rollout;
mod segment_rules;
mod segments;
mod smtp_channel;
mod swap;
mod tracking;
mod vendors;
