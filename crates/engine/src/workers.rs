//! The threads that run tasks, at the lowest scheduling priority the OS offers (P3.3): on Linux
//! SCHED_IDLE, which runs only when no other thread wants the CPU (else nice 19); on Windows
//! THREAD_PRIORITY_IDLE; on macOS the background band (`idlegrid-platform` applies it).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

pub struct Workers {
    sender: Mutex<mpsc::Sender<Job>>,
    /// What the OS granted, for the status page.
    pub priority: String,
}

impl Workers {
    /// Start `count` threads named `{prefix}-{i}` (Linux keeps 15 characters of a thread's
    /// name); `lowest` lowers their priority.
    pub fn start(prefix: &str, count: u32, lowest: bool) -> Workers {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let (granted_tx, granted_rx) = mpsc::channel();
        for i in 0..count.max(1) {
            let receiver = receiver.clone();
            let granted_tx = granted_tx.clone();
            std::thread::Builder::new()
                .name(format!("{prefix}-{i}"))
                .spawn(move || {
                    let granted = if lowest { idlegrid_platform::lower_this_thread() } else { "normal".into() };
                    let _ = granted_tx.send(granted);
                    loop {
                        let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the engine is gone
                        }
                    }
                })
                .expect("the OS starts a thread");
        }
        let priority = granted_rx.recv().unwrap_or_else(|_| "unknown".into());
        Workers { sender: Mutex::new(sender), priority }
    }

    /// Run `job` on a worker thread; the result arrives on the returned channel.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        let _ = self.sender.lock().unwrap_or_else(|p| p.into_inner()).send(job);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_low_priority_threads() {
        let workers = Workers::start("igt-test", 2, true);
        assert_ne!(workers.priority, "normal (could not lower)");
        #[cfg(windows)]
        assert_eq!(workers.priority, "THREAD_PRIORITY_IDLE");
        let policy = workers.run(|| {
            #[cfg(target_os = "linux")]
            {
                // SAFETY: reading the calling thread's policy.
                unsafe { libc::sched_getscheduler(0) }
            }
            #[cfg(not(target_os = "linux"))]
            {
                0
            }
        });
        #[cfg(target_os = "linux")]
        assert_eq!(policy.await.unwrap(), libc::SCHED_IDLE);
        #[cfg(not(target_os = "linux"))]
        let _ = policy.await;
        assert_eq!(workers.run(|| 6 * 7).await.unwrap(), 42);
    }
}
