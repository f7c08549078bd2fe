//! Password hashing with argon2id at OWASP's parameters (m=19456 KiB, t=2, p=1).
//!
//! Each hash costs tens of milliseconds of CPU, so it never runs on an async
//! worker: it runs on a few dedicated threads, one per CPU, fed by a queue. A
//! login storm queues here instead of starving every other request.
//!
//! Each thread owns its 19 MiB of argon2 memory and reuses it for every hash
//! (`hash_password_into_with_memory`): no page faults per hash, and resident
//! memory bounded by threads × 19 MiB. Letting argon2 allocate per hash left
//! the allocator's arenas fragmented: 240 logins grew the process from 12 to
//! 170 MiB, never returned.
//!
//! Logins for unknown emails verify against a dummy hash so the response
//! time does not reveal whether an account exists.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, oneshot};

/// A hashing thread's reusable argon2 memory.
type Memory = Vec<Block>;
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    dummy_hash: Arc<str>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("OWASP parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// argon2 of `password` and the decoded `salt` into `memory` (grown once to
/// the parameters' block count), with an output as long as `len`.
fn compute(
    argon: &Argon2<'_>,
    memory: &mut Memory,
    password: &[u8],
    salt: &argon2::password_hash::Salt<'_>,
    len: usize,
) -> anyhow::Result<Output> {
    let mut salt_bytes = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let blocks = argon.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), as
/// `PasswordHasher::hash_password` writes it.
fn hash_blocking(memory: &mut Memory, password: &[u8]) -> anyhow::Result<String> {
    let argon = argon2();
    let salt = SaltString::generate(&mut OsRng);
    let output = compute(
        &argon,
        memory,
        password,
        &salt.as_salt(),
        Params::DEFAULT_OUTPUT_LEN,
    )?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Whether `password` matches the PHC string `stored`, at the parameters it
/// was made with; the comparison is constant-time (`Output`'s `Eq`).
fn verify_blocking(memory: &mut Memory, password: &[u8], stored: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
    let unreadable =
        |e: argon2::password_hash::Error| anyhow::anyhow!("stored hash unreadable: {e}");
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(unreadable)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(unreadable)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash has no salt or no hash");
    };
    let argon = Argon2::new(algorithm, version, params);
    let actual = compute(&argon, memory, password, &salt, expected.len())?;
    Ok(actual == expected)
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
                .spawn(move || {
                    // Allocated at this thread's first hash, kept until it ends.
                    let mut memory = Memory::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(mut rx) => rx.blocking_recv(),
                            Err(_) => None,
                        };
                        match job {
                            // A panicking job drops its answer channel: the caller gets an error.
                            Some(job) => drop(std::panic::catch_unwind(
                                std::panic::AssertUnwindSafe(|| job(&mut memory)),
                            )),
                            None => break,
                        }
                    }
                })?;
        }
        // Its memory is freed (and returned to the system) at once.
        let dummy = hash_blocking(
            &mut Memory::new(),
            b"dummy password that matches no account",
        )?;
        Ok(Self {
            jobs: tx,
            dummy_hash: dummy.into(),
        })
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Memory) -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |memory: &mut Memory| {
                let _ = tx.send(f(memory));
            }))
            .await
            .map_err(|_| anyhow::anyhow!("password hashing threads are gone"))?;
        Ok(rx.await?)
    }

    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        self.run(move |memory| hash_blocking(memory, password.expose_secret().as_bytes()))
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
        self.run(move |memory| {
            let known = hash.is_some();
            let stored = hash.unwrap_or_else(|| dummy.to_string());
            let ok = verify_blocking(memory, password.expose_secret().as_bytes(), &stored)?;
            Ok(known && ok)
        })
        .await?
    }
}

/// `n` hashes at the service's parameters, timed, after `warmup` untimed
/// ones, on one thread reusing its memory as the hashing threads do;
/// sorted. The benchmark's reference.
pub fn time_hashes(warmup: usize, n: usize) -> Vec<std::time::Duration> {
    let mut memory = Memory::new();
    let mut times: Vec<_> = (0..warmup + n)
        .map(|_| {
            let start = std::time::Instant::now();
            let _ = hash_blocking(&mut memory, b"benchmark password");
            start.elapsed()
        })
        .skip(warmup)
        .collect();
    times.sort();
    times
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    #[test]
    fn hashes_verify_both_ways_with_the_argon2_crate() {
        let mut memory = Memory::new();
        // Ours, checked by the crate's own verifier.
        let ours = hash_blocking(&mut memory, b"correct horse").expect("hash");
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(argon2().verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2().verify_password(b"correct horsf", &parsed).is_err());
        // The crate's (as stored before this module reused memory), checked by ours.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2()
            .hash_password(b"battery staple", &salt)
            .expect("hash")
            .to_string();
        assert!(verify_blocking(&mut memory, b"battery staple", &theirs).expect("verify"));
        assert!(!verify_blocking(&mut memory, b"battery stapler", &theirs).expect("verify"));
        // Other parameters than ours still verify, with the memory regrown.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).expect("params"),
        )
        .hash_password(b"x", &salt)
        .expect("hash")
        .to_string();
        assert!(verify_blocking(&mut memory, b"x", &small).expect("verify"));
        assert!(!verify_blocking(&mut memory, b"y", &small).expect("verify"));
        assert!(verify_blocking(&mut memory, b"x", "$argon2id$garbage").is_err());
    }
}
