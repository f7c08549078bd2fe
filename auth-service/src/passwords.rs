//! Password hashing with argon2id at OWASP's parameters (m=19456 KiB, t=2, p=1).
//!
//! Each hash costs tens of milliseconds of CPU, so it never runs on an async
//! worker: it runs on a few dedicated threads, one per CPU, fed by a queue. A
//! login storm queues here instead of starving every other request, and each
//! thread reuses its own warm 19 MiB of argon2 memory; on tokio's shared
//! blocking pool a hash landed on a random thread and paid page faults for it. Logins for unknown emails verify against a dummy hash
//! so the response time does not reveal whether an account exists.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    dummy_hash: Arc<str>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("OWASP parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2()
        .hash_password(password, &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

impl PasswordHasher {
    /// `threads` hashes may run at once; 0 means one per CPU. The threads
    /// end when the last clone of the hasher is dropped.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let n = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(mut rx) => rx.blocking_recv(),
                        Err(_) => None,
                    };
                    match job {
                        // A panicking job drops its answer channel: the caller gets an error.
                        Some(job) => {
                            drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)))
                        }
                        None => break,
                    }
                })?;
        }
        let dummy = hash_blocking(b"dummy password that matches no account")?;
        Ok(Self {
            jobs: tx,
            dummy_hash: dummy.into(),
        })
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .await
            .map_err(|_| anyhow::anyhow!("password hashing threads are gone"))?;
        Ok(rx.await?)
    }

    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        self.run(move || hash_blocking(password.expose_secret().as_bytes()))
            .await?
    }

    /// True when `password` matches `hash`. With no hash (unknown user) the
    /// dummy is verified instead, at the same cost, and the answer is false.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let dummy = self.dummy_hash.clone();
        self.run(move || {
            let known = hash.is_some();
            let stored = hash.unwrap_or_else(|| dummy.to_string());
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
            let ok = argon2()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok();
            Ok(known && ok)
        })
        .await?
    }
}

/// One hash at the service's parameters, timed; the benchmark's reference.
pub fn time_one_hash() -> std::time::Duration {
    let start = std::time::Instant::now();
    let _ = hash_blocking(b"benchmark password");
    start.elapsed()
}
