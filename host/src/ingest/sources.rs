//! Sources: who may send tracking calls. Each has a write key, stored only as its sha256.

use serde::{Deserialize, Serialize};

use crate::plugins::sha256_hex;
use crate::store::{Engine, StoreError, Tree, decode_json, encode_json};

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

/// The sources and their write-key hashes.
#[derive(Clone)]
pub struct Sources {
    by_key: Tree,
    by_id: Tree,
}

impl Sources {
    /// Opens the source keyspaces of `engine`.
    pub fn open(engine: &dyn Engine) -> Result<Self, StoreError> {
        Ok(Self {
            by_key: engine.open("source_keys")?,
            by_id: engine.open("sources")?,
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
        self.by_id
            .insert(source.id.as_bytes(), &encode_json(source)?)?;
        self.by_key.insert(
            sha256_hex(write_key.as_bytes()).as_bytes(),
            source.id.as_bytes(),
        )?;
        self.by_key.flush()
    }

    /// The source a write key belongs to.
    pub fn authenticate(&self, write_key: &str) -> Result<Option<Source>, StoreError> {
        let Some(id) = self
            .by_key
            .get(sha256_hex(write_key.as_bytes()).as_bytes())?
        else {
            return Ok(None);
        };
        let Some(json) = self.by_id.get(&id)? else {
            return Ok(None);
        };
        decode_json(&id, &json).map(Some)
    }

    /// Every source.
    pub fn list(&self) -> Result<Vec<Source>, StoreError> {
        self.by_id
            .iter()
            .map(|r| {
                let (k, v) = r?;
                decode_json(&k, &v)
            })
            .collect()
    }
}
