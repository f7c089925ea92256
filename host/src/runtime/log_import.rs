//! The `log` import: the guest's strings are read in place and truncated before any copy, at
//! most [`MAX_FIELDS`] fields are read, and one call's log is bounded in records and bytes.
//!
//! The generated binding would copy every string of a record out of the guest first: 1,000
//! fields that all point at one 4 MiB buffer are 4 GB on the host. Here each string costs at
//! most its limit, and a record at most [`MAX_LINE_BYTES`].

use std::borrow::Cow;

use wasmtime::StoreContextMut;
use wasmtime::ValRaw;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, Linker};

use super::state::PluginState;

/// `level`, lifted: severity, lowest first.
// The variants are built by the `Lift` derive from the discriminant, out of the compiler's view.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, ComponentType, Lift)]
#[component(enum)]
#[repr(u8)]
pub enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

/// Records one call may write; further ones are dropped, as the contract allows.
pub const LOG_BUDGET: u32 = 100;
/// Bytes of log (records as kept, after truncation) one call may write; a record past it fails
/// the call with `log_limit`.
pub const LOG_BYTES_PER_CALL: usize = 256 << 10;
/// Longest message kept, bytes.
pub const MAX_MESSAGE_BYTES: usize = 2 << 10;
/// Longest field key kept, bytes.
pub const MAX_FIELD_KEY_BYTES: usize = 64;
/// Longest field value kept, bytes.
pub const MAX_FIELD_VALUE_BYTES: usize = 512;
/// Fields kept per record; further ones are not read.
pub const MAX_FIELDS: usize = 16;
/// The longest record a call can keep: message, and every field as ` key=value`.
pub const MAX_LINE_BYTES: usize =
    MAX_MESSAGE_BYTES + MAX_FIELDS * (MAX_FIELD_KEY_BYTES + MAX_FIELD_VALUE_BYTES + 2);

/// What is left of one call's log budget.
#[derive(Debug, Clone, Copy)]
pub struct LogBudget {
    records: u32,
    bytes: usize,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            records: LOG_BUDGET,
            bytes: LOG_BYTES_PER_CALL,
        }
    }
}

/// The call logged more than [`LOG_BYTES_PER_CALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("the call's log is over its budget of {} KiB", LOG_BYTES_PER_CALL >> 10)]
pub struct LogLimitExceeded;

/// A guest string cut to at most `MAX` bytes (at a character boundary) while it is read; the
/// rest is never copied. Invalid UTF-8 is replaced, not refused: it is only a log line.
pub struct Cut<const MAX: usize>(pub String);

impl<const MAX: usize> Cut<MAX> {
    fn read(cx: &LiftContext<'_>, ptr: usize, len: usize) -> wasmtime::Result<Self> {
        let memory = cx.memory();
        let end = ptr
            .checked_add(len)
            .filter(|&end| end <= memory.len())
            .ok_or_else(|| {
                wasmtime::format_err!("string pointer/length out of bounds of memory")
            })?;
        let bytes = &memory[ptr..end.min(ptr + MAX)];
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            // Cut inside a character: keep what precedes it.
            Err(e) if e.error_len().is_none() => {
                Cow::Borrowed(std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default())
            }
            Err(_) => String::from_utf8_lossy(bytes),
        };
        Ok(Self(text.into_owned()))
    }
}

fn pair_from_memory(bytes: &[u8]) -> (usize, usize) {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(usize::MAX, |b| u32::from_le_bytes(b) as usize)
    };
    (word(0), word(4))
}

// SAFETY: the canonical ABI of `string`, as `String` has it.
unsafe impl<const MAX: usize> ComponentType for Cut<MAX> {
    type Lower = <String as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <String as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <String as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: reads the (pointer, length) pair the canonical ABI gives a string, bounds-checked.
unsafe impl<const MAX: usize> Lift for Cut<MAX> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        _ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let src: &[ValRaw; 2] = src;
        Self::read(cx, src[0].get_u32() as usize, src[1].get_u32() as usize)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        _ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let (ptr, len) = pair_from_memory(bytes);
        Self::read(cx, ptr, len)
    }
}

/// The first [`MAX_FIELDS`] fields of a record; the others are not read.
pub struct Fields(pub Vec<(Cut<MAX_FIELD_KEY_BYTES>, Cut<MAX_FIELD_VALUE_BYTES>)>);

type Field = (Cut<MAX_FIELD_KEY_BYTES>, Cut<MAX_FIELD_VALUE_BYTES>);

impl Fields {
    fn read(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        ptr: usize,
        len: usize,
    ) -> wasmtime::Result<Self> {
        let InterfaceType::List(list) = ty else {
            wasmtime::bail!("expected a list of fields");
        };
        let elem = cx.types[list].element;
        let size = Field::SIZE32;
        let memory_len = cx.memory().len();
        let kept = len.min(MAX_FIELDS);
        // The whole list must lie in memory, as the canonical ABI requires, even if only its
        // head is read.
        len.checked_mul(size)
            .and_then(|n| ptr.checked_add(n))
            .filter(|&end| end <= memory_len)
            .ok_or_else(|| wasmtime::format_err!("list pointer/length out of bounds of memory"))?;
        let mut out = Vec::with_capacity(kept);
        for i in 0..kept {
            let at = ptr + i * size;
            let bytes = &cx.memory()[at..at + size];
            out.push(Field::linear_lift_from_memory(cx, elem, bytes)?);
        }
        Ok(Self(out))
    }
}

// SAFETY: the canonical ABI of `list<tuple<string, string>>`.
unsafe impl ComponentType for Fields {
    type Lower = <Vec<(String, String)> as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Vec<(String, String)> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<(String, String)> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: reads the (pointer, length) pair of the list, bounds-checked, and its head.
unsafe impl Lift for Fields {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let src: &[ValRaw; 2] = src;
        Self::read(cx, ty, src[0].get_u32() as usize, src[1].get_u32() as usize)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let (ptr, len) = pair_from_memory(bytes);
        Self::read(cx, ty, ptr, len)
    }
}

/// Links the `log` function of the interface `instance` (`tessera:cx/log@0.1.0`) to [`log`].
pub fn add_to_linker(linker: &mut Linker<PluginState>, instance: &str) -> wasmtime::Result<()> {
    linker.instance(instance)?.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, PluginState>,
         (level, message, fields): (Level, Cut<MAX_MESSAGE_BYTES>, Fields)| {
            log(store.data_mut(), level, message.0, fields)
        },
    )
}

/// One record: kept in the slot's ring and written to the host's log, within the budget.
fn log(
    state: &mut PluginState,
    level: Level,
    message: String,
    fields: Fields,
) -> wasmtime::Result<()> {
    if state.logs.records == 0 {
        return Ok(());
    }
    let fields = fields
        .0
        .iter()
        .map(|(k, v)| format!("{}={}", k.0, v.0))
        .collect::<Vec<_>>()
        .join(" ");
    let size = message.len() + 1 + fields.len();
    state.logs.bytes = state.logs.bytes.checked_sub(size).ok_or(LogLimitExceeded)?;
    state.logs.records -= 1;
    let plugin = &*state.plugin;
    if let Some(sink) = &state.env.logs {
        let name = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let line = if fields.is_empty() {
            message.clone()
        } else {
            format!("{message} {fields}")
        };
        sink.line(name, plugin, &line);
    }
    match level {
        Level::Trace => tracing::trace!(target: "tessera::plugin", plugin, fields, "{message}"),
        Level::Debug => tracing::debug!(target: "tessera::plugin", plugin, fields, "{message}"),
        Level::Info => tracing::info!(target: "tessera::plugin", plugin, fields, "{message}"),
        Level::Warn => tracing::warn!(target: "tessera::plugin", plugin, fields, "{message}"),
        Level::Error => tracing::error!(target: "tessera::plugin", plugin, fields, "{message}"),
    }
    Ok(())
}
