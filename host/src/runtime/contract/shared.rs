//! The part of a contract version's binding that every version shares, as a macro each
//! `vX_Y` module expands.

/// What every contract version binds alike, expanded inside its `vX_Y` module (names such as
/// `types`, `kv`, `host`, `connector` resolve there, to that version's items): the host
/// imports in the linker, the world checks, and the `From` conversions of the types 0.1
/// defined, which later versions keep field for field. A version adds its own conversions
/// (0.1's rule input and message, 0.2's past events, decisions, message and status updates)
/// beside it.
macro_rules! shared_glue {
    ($version:literal) => {
        pub use connector::tessera::cx::{config, kv, log, types};

        use channel::exports::tessera::cx::sender;
        use connector::exports::tessera::cx::source;
        use segment_rule::exports::tessera::cx::rule;

        /// Links this version's host imports: `config` and `kv` through the generated bindings,
        /// `log` through [`log_import`], which reads the guest's strings in place.
        pub(in crate::runtime) fn add_to_linker(
            linker: &mut Linker<PluginState>,
        ) -> wasmtime::Result<()> {
            types::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
            config::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
            kv::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
            log_import::add_to_linker(linker, concat!("tessera:cx/log@", $version))
        }

        /// Checks the component exports `kind`'s interface with this version's types; the error says
        /// which kind it does implement, if any.
        pub(in crate::runtime) fn check_world<T>(
            pre: &InstancePre<T>,
            kind: PluginKind,
        ) -> Result<(), LoadError> {
            let connector = source::GuestIndices::new(pre).map(drop);
            let rule = rule::GuestIndices::new(pre).map(drop);
            let channel = sender::GuestIndices::new(pre).map(drop);
            let found = [
                (PluginKind::Connector, connector.is_ok()),
                (PluginKind::SegmentRule, rule.is_ok()),
                (PluginKind::Channel, channel.is_ok()),
            ]
            .into_iter()
            .find_map(|(k, ok)| ok.then_some(k));
            let checked = match kind {
                PluginKind::Connector => connector,
                PluginKind::SegmentRule => rule,
                PluginKind::Channel => channel,
            };
            checked.map_err(|e| LoadError::WorldMismatch {
                expected: kind,
                found,
                detail: format!("{e:#}"),
            })
        }

        /// True when the component exports `self-test` with this version's types.
        pub(in crate::runtime) fn exports_self_test<T>(pre: &InstancePre<T>) -> bool {
            connector::exports::tessera::cx::self_test::GuestIndices::new(pre).is_ok()
        }

        impl types::Host for PluginState {}

        impl config::Host for PluginState {
            fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                Ok(self.config_get(&key))
            }

            fn get_all(&mut self) -> wasmtime::Result<String> {
                Ok(self.config_all())
            }
        }

        impl kv::Host for PluginState {
            fn get(
                &mut self,
                key: String,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::KvError>> {
                Ok(self.kv_get(&key).map_err(Into::into))
            }

            fn set(
                &mut self,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), kv::KvError>> {
                Ok(self.kv_set(&key, &value).map_err(Into::into))
            }

            fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), kv::KvError>> {
                Ok(self.kv_delete(&key).map_err(Into::into))
            }
        }

        impl From<KvRefusal> for kv::KvError {
            fn from(e: KvRefusal) -> Self {
                match e {
                    KvRefusal::TooLarge(why) => Self::TooLarge(why),
                    KvRefusal::QuotaExceeded(why) => Self::QuotaExceeded(why),
                    KvRefusal::ReadOnly => Self::ReadOnly,
                    KvRefusal::Unavailable(why) => Self::Unavailable(why),
                }
            }
        }

        // Host types into this version's types, for the inputs of calls.

        impl From<&host::Identity> for types::Identity {
            fn from(i: &host::Identity) -> Self {
                Self {
                    kind: i.kind.clone(),
                    value: i.value.clone(),
                }
            }
        }

        impl From<&host::ContactRef> for types::ContactRef {
            fn from(c: &host::ContactRef) -> Self {
                Self {
                    user_id: c.user_id.clone(),
                    anonymous_id: c.anonymous_id.clone(),
                    identities: c.identities.iter().map(Into::into).collect(),
                }
            }
        }

        impl From<&host::Contact> for types::Contact {
            fn from(c: &host::Contact) -> Self {
                Self {
                    id: c.id.clone(),
                    identities: c.identities.iter().map(Into::into).collect(),
                    traits: c.traits.clone(),
                }
            }
        }

        impl From<host::EventKind> for types::EventKind {
            fn from(k: host::EventKind) -> Self {
                match k {
                    host::EventKind::Track => Self::Track,
                    host::EventKind::Identify => Self::Identify,
                    host::EventKind::Page => Self::Page,
                    host::EventKind::Screen => Self::Screen,
                    host::EventKind::Group => Self::Group,
                    host::EventKind::Alias => Self::Alias,
                }
            }
        }

        impl From<&host::Event> for types::Event {
            fn from(e: &host::Event) -> Self {
                Self {
                    id: e.id.clone(),
                    kind: e.kind.into(),
                    name: e.name.clone(),
                    contact: (&e.contact).into(),
                    timestamp: e.timestamp.clone(),
                    properties: e.properties.clone(),
                    traits: e.traits.clone(),
                }
            }
        }

        impl From<&host::EventCount> for types::EventCount {
            fn from(c: &host::EventCount) -> Self {
                Self {
                    name: c.name.clone(),
                    count: c.count,
                }
            }
        }

        impl From<&host::HttpRequest> for types::HttpRequest {
            fn from(r: &host::HttpRequest) -> Self {
                Self {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    query: r.query.clone(),
                    headers: r.headers.clone(),
                    body: r.body.clone(),
                }
            }
        }

        // This version's types into host types: what benchmarks and tests that drive the generated
        // bindings directly compare against. (Call results are lifted by `runtime::output` under a
        // byte budget, not through these types.)

        impl From<types::EventKind> for host::EventKind {
            fn from(k: types::EventKind) -> Self {
                match k {
                    types::EventKind::Track => Self::Track,
                    types::EventKind::Identify => Self::Identify,
                    types::EventKind::Page => Self::Page,
                    types::EventKind::Screen => Self::Screen,
                    types::EventKind::Group => Self::Group,
                    types::EventKind::Alias => Self::Alias,
                }
            }
        }

        impl From<types::ConnectorError> for host::ConnectorError {
            fn from(e: types::ConnectorError) -> Self {
                match e {
                    types::ConnectorError::Unauthorized(m) => Self::Unauthorized(m),
                    types::ConnectorError::BadRequest(m) => Self::BadRequest(m),
                    types::ConnectorError::Unsupported(m) => Self::Unsupported(m),
                    types::ConnectorError::Upstream(m) => Self::Upstream(m),
                }
            }
        }

        impl From<types::Delivery> for host::Delivery {
            fn from(d: types::Delivery) -> Self {
                Self {
                    provider_id: d.provider_id,
                    detail: d.detail,
                }
            }
        }

        impl From<types::SendError> for host::SendError {
            fn from(e: types::SendError) -> Self {
                match e {
                    types::SendError::Retryable(r) => Self::Retryable(host::Retry {
                        message: r.message,
                        after_ms: r.after_ms,
                    }),
                    types::SendError::Permanent(m) => Self::Permanent(m),
                }
            }
        }
    };
}
