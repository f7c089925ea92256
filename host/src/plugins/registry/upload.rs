//! Uploading a version: the manifest checked, the component compiled and its world checked, then
//! stored beside the slot it belongs to.

use std::sync::Arc;

use crate::plugins::store::{Action, SlotRecord, VersionRecord};

use super::{Actor, PluginRegistry, VersionView};
use crate::clock::now_ms;
use crate::digest::sha256_hex;
use crate::plugins::{Manifest, PluginError};

impl PluginRegistry {
    /// Stores a new version after checking that it compiles and implements its manifest's
    /// world. Compiles: call it off the async executor.
    pub fn upload(
        &self,
        manifest_text: &str,
        component: &[u8],
        actor: &Actor,
    ) -> Result<VersionView, PluginError> {
        self.upload_as(manifest_text, component, actor, false)
    }

    /// [`upload`](Self::upload) of a plugin the operator ships in `--plugins-dir`: its first
    /// activation needs no approval of what it asks for.
    pub fn upload_bundled(
        &self,
        manifest_text: &str,
        component: &[u8],
        actor: &Actor,
    ) -> Result<VersionView, PluginError> {
        self.upload_as(manifest_text, component, actor, true)
    }

    pub(super) fn upload_as(
        &self,
        manifest_text: &str,
        component: &[u8],
        actor: &Actor,
        bundled: bool,
    ) -> Result<VersionView, PluginError> {
        let manifest = Manifest::parse(manifest_text)?;
        if let Some(name) = manifest
            .capabilities
            .env
            .iter()
            .find(|name| self.config.limits.is_host_secret(name))
        {
            return Err(PluginError::HostSecret {
                plugin: manifest.id,
                name: name.clone(),
            });
        }
        let sha = sha256_hex(component);
        let id = manifest.id.clone();
        if let Ok(slot) = self.slot(&id)
            && slot.kind != manifest.kind
        {
            return Err(PluginError::KindConflict {
                plugin: id,
                slot: slot.kind,
                version: manifest.kind,
            });
        }
        // A version is its component: the same bytes with another manifest would silently
        // keep the first one, so they are refused before anything is compiled.
        if let Ok(existing) = self.version_record(&id, &sha)
            && existing.manifest != manifest
        {
            return Err(PluginError::ManifestConflict {
                plugin: id,
                sha256: sha,
            });
        }
        let spec = self.config.limits.sandbox(&manifest, &sha);
        let plugin = self
            .runtime
            .prepare(spec, || Ok(component.to_vec()))
            .map_err(|source| PluginError::Load {
                plugin: id.clone(),
                source,
            })?;
        let record = VersionRecord {
            sha256: sha.clone(),
            manifest,
            size: component.len() as u64,
            uploaded_at_ms: now_ms(),
            imports: plugin.imports().to_vec(),
            bundled,
        };
        self.store.put_version(&id, &record, component)?;
        let slot = match self.slot(&id) {
            Ok(slot) => slot,
            Err(_) => {
                let record = SlotRecord {
                    id: id.clone(),
                    kind: record.manifest.kind,
                    live: None,
                    disabled: false,
                    config: serde_json::Map::new(),
                    history: Vec::new(),
                    rollout: None,
                };
                self.store.put_slot(&record)?;
                self.insert_slot(record)?
            }
        };
        slot.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sha.clone())
            .or_insert_with(|| Arc::new(plugin));
        tracing::info!(plugin = %id, sha256 = %sha, "version uploaded");
        self.audit(actor, Action::Upload, &id, Some(&sha));
        let stored = self.version_record(&id, &sha)?;
        Ok(self.version_view(&slot, stored))
    }
}
