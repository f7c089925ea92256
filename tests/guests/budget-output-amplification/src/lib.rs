//! Test guest: a connector whose output costs the host far more than it costs the guest.
//!
//! `handle_webhook` dispatches on the request path, or on the body's first word when the
//! request came to the webhook route (path `/`): `shared 10000` is `/shared` with body `10000`.
//!
//! | path      | returns                                                                      |
//! |-----------|------------------------------------------------------------------------------|
//! | `/ok`     | one small `track` event (id: the body)                                       |
//! | `/shared` | N events (the body, default 10,000) whose properties are one 12 KB JSON text  |
//! |           | that every event points at: about 1 MB of guest memory, 120 MB once copied   |
//! | `/big`    | one event whose properties are the body's number of MB (default 15) of text  |
//!
//! The allocator never frees, so the strings that share one buffer are never freed twice
//! when the host asks the guest to release its output.

use std::mem::ManuallyDrop;
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_sdk::Connector;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};

/// A bump allocator over `memory.grow` whose `dealloc` does nothing (wasm only: built
/// natively, as lints and native tests build every crate, the guest keeps the system one).
#[cfg(target_arch = "wasm32")]
mod never_free {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct NeverFree;

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static END: AtomicUsize = AtomicUsize::new(0);

    unsafe impl GlobalAlloc for NeverFree {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let align = layout.align().max(8);
            let mut start = (NEXT.load(Ordering::Relaxed) + align - 1) & !(align - 1);
            if start == 0 || start + layout.size() > END.load(Ordering::Relaxed) {
                let pages = (layout.size() + align).div_ceil(65_536) + 16;
                let old = core::arch::wasm32::memory_grow(0, pages);
                if old == usize::MAX {
                    return std::ptr::null_mut();
                }
                start = (old * 65_536 + align - 1) & !(align - 1);
                END.store((old + pages) * 65_536, Ordering::Relaxed);
            }
            NEXT.store(start + layout.size(), Ordering::Relaxed);
            start as *mut u8
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
    }

    #[global_allocator]
    static ALLOCATOR: NeverFree = NeverFree;
}

/// The amplifying connector.
pub struct OutputAmplification;

impl Connector for OutputAmplification {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let text = String::from_utf8_lossy(&request.body).trim().to_string();
        let (route, body) = match request.path.as_str() {
            "/" => {
                let (word, rest) = text.split_once(' ').unwrap_or((&text, ""));
                (format!("/{word}"), rest.trim().to_string())
            }
            path => (path.to_string(), text.clone()),
        };
        let number = |default: usize| body.parse().unwrap_or(default);
        match route.as_str() {
            "/ok" => Ok(vec![event(format!("ok-{body}"))]),
            "/shared" => {
                let mut text = String::from("{\"a\":[0");
                while text.len() < 12 * 1024 - 2 {
                    text.push_str(",0");
                }
                text.push_str("]}");
                let text = ManuallyDrop::new(text);
                let n = number(10_000);
                let stamp = nanos();
                Ok((0..n)
                    .map(|i| {
                        let mut e = event(format!("shared-{stamp}-{i}"));
                        // SAFETY: every copy aliases the same bytes, which are never written
                        // nor freed (the allocator does not free).
                        e.properties = unsafe {
                            String::from_raw_parts(text.as_ptr().cast_mut(), text.len(), text.len())
                        };
                        e
                    })
                    .collect())
            }
            "/big" => {
                let mb = number(15);
                let mut e = event(format!("big-{}", nanos()));
                e.properties = format!("{{\"pad\":\"{}\"}}", "x".repeat(mb << 20));
                Ok(vec![e])
            }
            other => Err(ConnectorError::Unsupported(format!("no route `{other}`"))),
        }
    }
}

tessera_sdk::export_connector!(OutputAmplification);

fn event(id: String) -> Event {
    Event::track(id, "amplified", ContactRef::user("amplifier"))
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
