//! Each plugin's share of the instance pool: at most N of its calls in flight, the excess
//! waits briefly and is then refused, so one plugin cannot hold every slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// The longest a call waits for its plugin's share before it is refused.
pub const SHARE_WAIT: Duration = Duration::from_secs(1);

/// Calls in flight of one plugin id (every version of it).
#[derive(Default)]
pub struct Share {
    in_flight: Mutex<u32>,
    freed: Notify,
}

/// One call's place in its plugin's share; gives it back when dropped.
pub struct ShareGuard {
    share: Arc<Share>,
}

impl Drop for ShareGuard {
    fn drop(&mut self) {
        let mut n = self
            .share
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        drop(n);
        // Versions of one plugin may have different shares, so every waiter looks again.
        self.share.freed.notify_waiters();
    }
}

impl Share {
    fn try_enter(self: &Arc<Self>, limit: u32) -> Option<ShareGuard> {
        let mut n = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        (*n < limit).then(|| {
            *n += 1;
            ShareGuard {
                share: self.clone(),
            }
        })
    }

    /// A place among `limit` calls in flight, waiting at most `wait` for one; `None` when
    /// none freed in time.
    pub async fn enter(self: &Arc<Self>, limit: u32, wait: Duration) -> Option<ShareGuard> {
        if let Some(guard) = self.try_enter(limit) {
            return Some(guard);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a release between the look and the wait is seen.
            freed.as_mut().enable();
            if let Some(guard) = self.try_enter(limit) {
                return Some(guard);
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }

    /// Calls in flight now.
    #[cfg(test)]
    fn in_flight(&self) -> u32 {
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The shares of every plugin id with a prepared version.
#[derive(Default)]
pub struct Shares {
    by_plugin: Mutex<HashMap<String, Weak<Share>>>,
}

impl Shares {
    /// The share of `plugin`, shared by all its prepared versions.
    pub fn of(&self, plugin: &str) -> Arc<Share> {
        let mut map = self.by_plugin.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(share) = map.get(plugin).and_then(Weak::upgrade) {
            return share;
        }
        map.retain(|_, s| s.strong_count() > 0);
        let share = Arc::new(Share::default());
        map.insert(plugin.to_string(), Arc::downgrade(&share));
        share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_excess_waits_briefly_then_is_refused() {
        let shares = Shares::default();
        let share = shares.of("p");
        assert!(Arc::ptr_eq(&share, &shares.of("p")), "one share per plugin");
        let a = share.enter(2, Duration::ZERO).await.expect("first");
        let _b = share.enter(2, Duration::ZERO).await.expect("second");
        let started = std::time::Instant::now();
        assert!(share.enter(2, Duration::from_millis(50)).await.is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(share.in_flight(), 2);
        // A place freed during the wait is taken.
        let waiter = {
            let share = share.clone();
            tokio::spawn(async move { share.enter(2, Duration::from_secs(5)).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert!(waiter.await.unwrap());
        assert_eq!(
            share.in_flight(),
            1,
            "the waiter's place was given back with its task"
        );
    }
}
