//! Graceful shutdown: one signal future turned into a [`CancellationToken`].

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Completes on the first SIGTERM or SIGINT.
pub async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler only fails outside a runtime");
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A token cancelled when `signal` completes.
pub fn token_on(signal: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

/// Waits for every task of `tracker` to finish, for at most `grace`. Returns whether they all
/// did.
pub async fn drain(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    match tokio::time::timeout(grace, tracker.wait()).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "tasks still running after the grace period"
            );
            false
        }
    }
}

/// Runs `work` to completion unless `shutdown` is cancelled and `work` then takes longer than
/// `grace`; returns `None` in that case.
pub async fn with_grace<F: Future>(
    work: F,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Option<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        output = &mut work => Some(output),
        () = shutdown.cancelled() => match tokio::time::timeout(grace, work).await {
            Ok(output) => Some(output),
            Err(_) => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight work abandoned after the grace period");
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn token_is_cancelled_when_the_signal_fires() {
        let (fire, fired) = tokio::sync::oneshot::channel::<()>();
        let token = token_on(async move {
            let _ = fired.await;
        });
        assert!(!token.is_cancelled());
        fire.send(()).expect("receiver alive");
        tokio::time::timeout(Duration::from_secs(5), token.cancelled()).await.expect("cancelled");
    }

    #[tokio::test]
    async fn with_grace_finishes_quick_work_and_abandons_slow_work() {
        let shutdown = CancellationToken::new();
        assert_eq!(with_grace(async { 7 }, &shutdown, Duration::from_secs(1)).await, Some(7));
        shutdown.cancel();
        let slow = std::future::pending::<()>();
        assert_eq!(with_grace(slow, &shutdown, Duration::from_millis(20)).await, None);
    }

    #[tokio::test]
    async fn drain_gives_up_after_the_grace_period() {
        let tracker = TaskTracker::new();
        let (_hold, wait) = tokio::sync::oneshot::channel::<()>();
        tracker.spawn(async move {
            let _ = wait.await;
        });
        assert!(!drain(&tracker, Duration::from_millis(50)).await);

        let quick = TaskTracker::new();
        quick.spawn(async {});
        assert!(drain(&quick, Duration::from_secs(5)).await);
    }
}
