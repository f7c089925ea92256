//! Whether a call's outbound requests really go out, are taped, or are answered from a tape:
//! shared by the call's state and the outbound hooks without either importing the other.

use std::sync::Arc;

use super::tape::{Stub, Tape};

/// Whether a call's outbound requests happen.
#[derive(Clone, Default)]
pub enum Effects {
    /// Requests go out under the version's policy.
    #[default]
    Live,
    /// Requests go out under the version's policy, and every answer read to its end is
    /// taped: the live side of a shadow run.
    Taped(Arc<Tape>),
    /// Nothing leaves the host: each HTTP request is recorded (`METHOD uri`) and answered
    /// from the stub's tape when the live call made the same request, else with `200 {}`;
    /// TCP is refused. Shadow runs and replays use this.
    Stubbed(Arc<Stub>),
}

impl Effects {
    /// True when requests really go out.
    pub fn is_live(&self) -> bool {
        !matches!(self, Effects::Stubbed(_))
    }

    /// The requests a stubbed call made so far (empty when requests went out).
    pub fn recorded(&self) -> Vec<String> {
        match self {
            Effects::Live | Effects::Taped(_) => Vec::new(),
            Effects::Stubbed(stub) => stub.requests(),
        }
    }
}
