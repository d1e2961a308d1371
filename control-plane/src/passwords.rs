//! Password hashing with argon2id (default parameters), run off the async threads through one
//! process-wide [`HashingLimiter`]: at most one hash per CPU at a time, a short bounded queue
//! behind them, and [`Busy`] for whoever finds the queue full or waits past its deadline.
//!
//! Invariant: hashing can never take more than `slots × 19 MiB` of memory or more than the CPUs
//! it is given, whatever the number of concurrent sign-ins; a flood is refused, not absorbed.
//!
//! Hashes run on the limiter's own threads, one per slot, each at a lower scheduling priority
//! (niceness 10): when the CPUs are contended, serving requests comes before checking passwords,
//! so a flood of wrong passwords slows the sign-ins, not everyone else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Semaphore;

/// Hashes a password to a PHC string. CPU-heavy (tens of ms): call from blocking context.
pub fn hash(password: &SecretString) -> String {
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Checks a password against a PHC string; a malformed hash never verifies.
pub fn verify(password: &SecretString, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of a random password nobody knows: verifying against it makes an unknown account cost
/// the same as a wrong password, so timing reveals nothing.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash(&SecretString::from(uuid::Uuid::new_v4().to_string())))
}

/// Every hashing slot is taken and the queue behind them is full, or the wait for a slot passed
/// its deadline: try again in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is busy; try again in a moment")]
pub struct Busy;

/// Bounds concurrent password hashing: `slots` run at once, at most `max_waiting` wait behind
/// them, each for at most `max_wait`.
#[derive(Debug)]
pub struct HashingLimiter {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
    /// The hashing threads' queue (never longer than the slots: a job is sent with its permit).
    jobs: Mutex<mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The niceness of the hashing threads: below the request-serving threads (0).
const HASHING_NICENESS: i32 = 10;

/// Starts `threads` hashing threads at [`HASHING_NICENESS`], taking jobs from one queue.
fn start_hashing_threads(threads: usize) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..threads {
        let receiver = receiver.clone();
        let started = std::thread::Builder::new()
            .name(format!("silo-hash-{index}"))
            .spawn(move || {
                // Linux: a thread's own niceness (setpriority on its thread id). Lowering it
                // needs no privilege; if it fails, hashing still works at normal priority.
                if let Err(error) = rustix::process::setpriority_process(
                    Some(rustix::thread::gettid()),
                    HASHING_NICENESS,
                ) {
                    tracing::debug!(%error, "cannot lower the hashing thread's priority");
                }
                loop {
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        // The limiter is gone.
                        Err(_) => return,
                    }
                }
            });
        if let Err(error) = started {
            tracing::error!(%error, "cannot start a password hashing thread");
        }
    }
    sender
}

/// Undoes one `waiting` count when the waiter stops waiting (got a slot, timed out or was
/// dropped with its request).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashingLimiter {
    pub fn new(slots: usize, max_waiting: usize, max_wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
            jobs: Mutex::new(start_hashing_threads(slots.max(1))),
        }
    }

    /// The process's limiter: one slot per CPU but one (so a flood of sign-ins always leaves a
    /// CPU to serve everyone else; one slot on a single CPU), eight waiters per CPU, two
    /// seconds' wait.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<HashingLimiter> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            Self::new(
                cpus.saturating_sub(1).max(1),
                cpus * 8,
                Duration::from_secs(2),
            )
        })
    }

    /// Runs `work` on the blocking pool once a slot is free; [`Busy`] if the queue is full or
    /// no slot frees up within the deadline.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let _waiting = Waiting(&self.waiting);
                tokio::time::timeout(self.max_wait, self.slots.clone().acquire_owned())
                    .await
                    .map_err(|_| Busy)?
                    .expect("the hashing semaphore is never closed")
            }
        };
        // The permit moves into the job: a request dropped mid-hash keeps its slot until the
        // CPU work it started is done.
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = work();
            drop(permit);
            let _ = answer.send(outcome);
        });
        self.jobs
            .lock()
            .map_err(|_| Busy)?
            .send(job)
            .map_err(|_| Busy)?;
        // A job whose thread is gone (it cannot start) is dropped unanswered: busy.
        answered.await.map_err(|_| Busy)
    }
}

/// [`hash`] through the process's [`HashingLimiter`].
pub async fn hash_async(password: SecretString) -> Result<String, Busy> {
    HashingLimiter::global().run(move || hash(&password)).await
}

/// [`verify`] through the process's [`HashingLimiter`]; `None` (an unknown account) verifies
/// against a dummy hash, so it costs the same and never succeeds.
pub async fn verify_async(password: SecretString, phc: Option<String>) -> Result<bool, Busy> {
    HashingLimiter::global()
        .run(move || match phc {
            Some(phc) => verify(&password, &phc),
            None => {
                let _ = verify(&password, dummy_hash());
                false
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let password = SecretString::from("correct horse battery");
        let phc = hash(&password);
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct horse"));
        assert!(verify(&password, &phc));
        assert!(!verify(&SecretString::from("wrong horse battery"), &phc));
        assert!(!verify(&password, "not a hash"));
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let password = SecretString::from("correct horse battery");
        assert_eq!(verify_async(password, None).await, Ok(false));
    }

    /// The niceness of the calling thread (field 19 of `/proc/thread-self/stat`; the command
    /// name, field 2, is in parentheses and may hold spaces).
    fn own_niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn hashing_runs_below_the_request_threads_priority() {
        let limiter = HashingLimiter::new(1, 1, Duration::from_secs(1));
        let base = own_niceness();
        let hashing = limiter.run(own_niceness).await.unwrap();
        // (Under an already niced test run, an unprivileged thread cannot go back up to 10.)
        assert!(
            hashing == HASHING_NICENESS || (base >= HASHING_NICENESS && hashing == base),
            "the hashing thread runs at niceness {hashing}, the test at {base}"
        );
    }

    /// Work that holds its slot until told to finish, and reports how many ran at once.
    fn blocker(
        running: &Arc<AtomicUsize>,
        most: &Arc<AtomicUsize>,
        release: std::sync::mpsc::Receiver<()>,
    ) -> impl FnOnce() + Send + 'static {
        let (running, most) = (running.clone(), most.clone());
        move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let _ = release.recv_timeout(Duration::from_secs(5));
            running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_bound_the_work_the_queue_is_bounded_and_waits_end_at_the_deadline() {
        let limiter = Arc::new(HashingLimiter::new(2, 3, Duration::from_millis(300)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut releases = Vec::new();
        let mut tasks = Vec::new();
        // Two run, three wait; the sixth finds the queue full at once.
        for _ in 0..5 {
            let (release, released) = std::sync::mpsc::channel();
            releases.push(release);
            let work = blocker(&running, &most, released);
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move { limiter.run(work).await }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = std::time::Instant::now();
        assert_eq!(limiter.run(|| ()).await, Err(Busy), "the queue is full");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "refused at once"
        );
        // Nobody releases the two running ones: the three waiters give up at the deadline.
        let mut outcomes = Vec::new();
        for task in tasks.drain(2..) {
            outcomes.push(task.await.unwrap());
        }
        assert_eq!(outcomes, [Err(Busy), Err(Busy), Err(Busy)]);
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "never more than the slots at once"
        );
        for release in &releases {
            let _ = release.send(());
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(()));
        }
        // The queue empties again: the next caller runs.
        assert_eq!(limiter.run(|| 7).await, Ok(7));
        assert_eq!(limiter.waiting.load(Ordering::SeqCst), 0);
    }
}
