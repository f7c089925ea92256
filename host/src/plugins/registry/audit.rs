//! Who acted on a plugin and why: the audit log's entries.

use crate::plugins::store::{Action, AuditEntry};

use super::PluginRegistry;
use crate::clock::now_ms;
use crate::plugins::PluginError;

/// Who acts, and why: recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// A short id of the admin key used, or `host`.
    pub key_id: String,
    /// The reason given, if any.
    pub reason: Option<String>,
}

impl Actor {
    /// The host acting on its own (bundled plugins, automatic rollback).
    pub fn host(reason: impl Into<String>) -> Self {
        Self {
            key_id: "host".into(),
            reason: Some(reason.into()),
        }
    }
}

impl PluginRegistry {
    /// Records an operator action; a failing audit write is logged, not fatal to the action.
    pub(in crate::plugins) fn audit(
        &self,
        actor: &Actor,
        action: Action,
        plugin: &str,
        sha: Option<&str>,
    ) {
        let entry = AuditEntry {
            seq: 0,
            at_ms: now_ms(),
            key_id: actor.key_id.clone(),
            action,
            plugin: plugin.into(),
            sha256: sha.map(str::to_string),
            reason: actor.reason.clone(),
        };
        if let Err(e) = self.store.append_audit(&entry) {
            tracing::error!(
                plugin,
                action = action.name(),
                "audit entry not written: {e}"
            );
        }
    }

    /// Records something the host did to a plugin on its own (switched its polling off after
    /// a crash, ...) in the audit log, with the reason.
    pub fn audit_host(&self, plugin: &str, action: Action, sha: Option<&str>, reason: &str) {
        self.audit(&Actor::host(reason), action, plugin, sha);
    }

    /// The newest `limit` audit entries, of one plugin if given.
    pub fn audit_log(
        &self,
        plugin: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, PluginError> {
        Ok(self.store.audit(plugin, limit)?)
    }
}
