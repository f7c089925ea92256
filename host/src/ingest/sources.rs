//! Sources: who may send tracking calls. Each has a write key, stored only as its sha256.

use serde::{Deserialize, Serialize};

use crate::plugins::sha256_hex;
use crate::store::StoreError;

/// A source of tracking calls (an app, a website, a server).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// Stable id.
    pub id: String,
    /// Operator-chosen name.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Browser origins (`https://shop.example.com`) whose pages may send to this source;
    /// empty means any origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

impl Source {
    /// True when a page from `origin` may send to this source.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/')))
    }
}

/// The sources and their write-key hashes, in sled.
#[derive(Clone)]
pub struct Sources {
    by_key: sled::Tree,
    by_id: sled::Tree,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Sources {
    /// Opens the source trees of `db`.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            by_key: db.open_tree("source_keys").map_err(backend)?,
            by_id: db.open_tree("sources").map_err(backend)?,
        })
    }

    /// Creates a source; returns it with its write key (shown this once).
    pub fn create(
        &self,
        name: &str,
        allowed_origins: Vec<String>,
    ) -> Result<(Source, String), StoreError> {
        let source = Source {
            id: format!("src_{}", hex::encode(rand::random::<[u8; 8]>())),
            name: name.to_string(),
            created_at: super::event::now_rfc3339(),
            allowed_origins,
        };
        let key = format!("wk_{}", hex::encode(rand::random::<[u8; 20]>()));
        self.add(&source, &key)?;
        Ok((source, key))
    }

    /// Registers a source with a given write key (the operator's choice, or a test's).
    pub fn add(&self, source: &Source, write_key: &str) -> Result<(), StoreError> {
        let json = serde_json::to_vec(source).map_err(backend)?;
        self.by_id
            .insert(source.id.as_bytes(), json)
            .map_err(backend)?;
        self.by_key
            .insert(
                sha256_hex(write_key.as_bytes()).as_bytes(),
                source.id.as_bytes(),
            )
            .map_err(backend)?;
        self.by_key.flush().map_err(backend)?;
        Ok(())
    }

    /// The source a write key belongs to.
    pub fn authenticate(&self, write_key: &str) -> Result<Option<Source>, StoreError> {
        let Some(id) = self
            .by_key
            .get(sha256_hex(write_key.as_bytes()).as_bytes())
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let Some(json) = self.by_id.get(&id).map_err(backend)? else {
            return Ok(None);
        };
        serde_json::from_slice(&json).map(Some).map_err(backend)
    }

    /// Every source.
    pub fn list(&self) -> Result<Vec<Source>, StoreError> {
        self.by_id
            .iter()
            .map(|r| {
                let (_, v) = r.map_err(backend)?;
                serde_json::from_slice(&v).map_err(backend)
            })
            .collect()
    }
}
