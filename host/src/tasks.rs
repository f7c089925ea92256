//! Background work on a plugin's behalf, isolated: a panic in one task is caught, logged and
//! counted instead of taking the process down, and the caller decides what to switch off.

use std::any::Any;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Prometheus counter of background tasks that panicked, labelled by `task` and `plugin`.
pub const TASK_PANICS_METRIC: &str = "tessera_task_panics_total";

/// How an isolated task ended without its result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// It panicked; the message is the panic's payload.
    #[error("panicked: {0}")]
    Panicked(String),
    /// It was cancelled (the runtime is shutting down).
    #[error("cancelled")]
    Cancelled,
}

/// Aborts the task when the waiting side goes away, so a cancelled wait cancels the work.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    }
}

/// Runs `future` as a task of its own and waits for it. A panic inside it unwinds that task
/// only: it is logged, counted in [`TASK_PANICS_METRIC`] and returned as
/// [`TaskError::Panicked`]. Dropping the returned future cancels the task.
pub async fn isolated<F>(
    task: &'static str,
    plugin: &str,
    future: F,
) -> Result<F::Output, TaskError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut handle = AbortOnDrop(tokio::spawn(future));
    match (&mut handle.0).await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => {
            let message = panic_message(e.into_panic());
            metrics::counter!(TASK_PANICS_METRIC, "task" => task, "plugin" => plugin.to_string())
                .increment(1);
            tracing::error!(task, plugin, "a background task panicked: {message}");
            Err(TaskError::Panicked(message))
        }
        Err(_) => Err(TaskError::Cancelled),
    }
}

/// `now + wait` without the panic of `Instant + Duration` on overflow: a wait too long to
/// represent becomes a year (a manifest or config value must never panic the host).
pub fn instant_after(now: Instant, wait: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(wait)
        .or_else(|| now.checked_add(wait.min(YEAR)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_caught_and_reported_and_the_caller_carries_on() {
        let out = isolated("test", "p", async { 41 + 1 }).await;
        assert_eq!(out.unwrap(), 42);
        let lock = std::sync::Arc::new(std::sync::Mutex::new(0u32));
        let held = lock.clone();
        let out = isolated("test", "p", async move {
            let _guard = held.lock().unwrap();
            let interval = Duration::from_secs(u64::MAX);
            // The very panic a huge poll interval caused, while holding a lock.
            let _ = Instant::now() + interval;
        })
        .await;
        match out {
            Err(TaskError::Panicked(message)) => assert!(message.contains("overflow"), "{message}"),
            other => panic!("expected a caught panic, got {other:?}"),
        }
        // The lock is poisoned; whoever uses it next takes it anyway instead of panicking.
        assert!(lock.is_poisoned());
        *lock.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let formatted = isolated("test", "p", async { panic!("boom {}", 7) }).await;
        assert!(matches!(formatted, Err(TaskError::Panicked(m)) if m == "boom 7"));
    }

    #[tokio::test]
    async fn dropping_the_wait_cancels_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let wait = isolated("test", "p", async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = tx.send(());
        });
        let _ = tokio::time::timeout(Duration::from_millis(20), wait).await;
        // The task was aborted: its sender is dropped without sending.
        assert!(rx.await.is_err());
    }

    #[test]
    fn instants_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            instant_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let far = instant_after(now, Duration::from_secs(u64::MAX));
        assert!(far > now + Duration::from_secs(300 * 24 * 3600));
    }
}
