//! Password hashing with argon2id at OWASP's parameters (m=19456 KiB, t=2, p=1).
//!
//! Each hash costs tens of milliseconds of CPU, so it runs on the blocking
//! pool, never on an async worker, and a semaphore sized to the CPU count
//! bounds how many run at once: a login storm queues here instead of starving
//! every other request. Logins for unknown emails verify against a dummy hash
//! so the response time does not reveal whether an account exists.

use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
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
    /// `concurrency` hashes may run at once; 0 means one per CPU.
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let n = if concurrency == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            concurrency
        };
        let dummy = hash_blocking(b"dummy password that matches no account")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(n)),
            dummy_hash: dummy.into(),
        })
    }

    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || hash_blocking(password.expose_secret().as_bytes()))
            .await?
    }

    /// True when `password` matches `hash`. With no hash (unknown user) the
    /// dummy is verified instead, at the same cost, and the answer is false.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let dummy = self.dummy_hash.clone();
        tokio::task::spawn_blocking(move || {
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
