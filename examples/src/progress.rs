//! A progress bar on stderr for long runs (`kafka-perf`): redrawn in place at most five
//! times a second by a background task that reads a shared counter, so the measured loop
//! pays one relaxed atomic add per record. It never writes to stdout, so a tool's `RESULT`
//! line stays alone there.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A progress bar; `None`-like when disabled (every method is then nearly free).
#[derive(Debug)]
pub struct Progress {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A bar towards `total` items named `unit`, drawn only when `enabled` (the caller
    /// decides: stderr is a terminal, or `--progress`).
    pub fn start(total: u64, unit: &'static str, enabled: bool) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = enabled.then(|| {
            let (done, stop) = (done.clone(), stop.clone());
            tokio::spawn(async move {
                let start = Instant::now();
                loop {
                    let n = done.load(Ordering::Relaxed);
                    {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(err, "\r{}", render(n, total, unit, start.elapsed()));
                        let _ = err.flush();
                    }
                    if stop.load(Ordering::Relaxed) {
                        // Clear the bar so that whatever follows starts on a clean line.
                        let _ = write!(std::io::stderr(), "\r{:width$}\r", "", width = 100);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Progress { done, stop, task }
    }

    /// Whether `stderr` is a terminal (the default for showing a bar).
    pub fn stderr_is_terminal() -> bool {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal()
    }

    /// Counts `n` more items done.
    #[inline]
    pub fn add(&self, n: u64) {
        if self.task.is_some() {
            self.done.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Removes the bar and waits for the drawing task to finish.
    pub async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// One frame: `[#########           ]  45% 450000/1000000 records  98765/s  ETA 6s`.
pub fn render(done: u64, total: u64, unit: &str, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let total = total.max(1);
    let done = done.min(total);
    let filled = (done * WIDTH / total) as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    let eta = if rate > 0.0 { format!("{:.0}s", (total - done) as f64 / rate) } else { "?".to_owned() };
    format!(
        "[{}{}] {:>3}% {done}/{total} {unit} {rate:>10.0}/s ETA {eta:<6}",
        "#".repeat(filled),
        " ".repeat(WIDTH as usize - filled),
        done * 100 / total
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let f = render(500, 1000, "records", Duration::from_secs(1));
        assert!(f.starts_with(&format!("[{}{}]  50% 500/1000 records", "#".repeat(15), " ".repeat(15))), "{f}");
        assert!(f.contains("ETA 1s"), "{f}");
        let full = render(2000, 1000, "records", Duration::from_secs(2));
        assert!(full.contains("100% 1000/1000"), "{full}");
    }
}
