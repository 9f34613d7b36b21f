//! Password hashing (argon2id) with bounded, reused working memory.
//!
//! Why: argon2id with the crate's default parameters fills 19 MiB per
//! hash or verification. `Argon2::hash_password` allocates them per call,
//! and under glibc that memory stayed with the process (the likely
//! mechanism: once the first 19 MiB block is unmapped the dynamic mmap
//! threshold rises above it, so later blocks come from malloc's arenas,
//! where small allocations made meanwhile keep the freed space from being
//! reused and the next block needs fresh memory). `scripts/bench-portal.sh` (200 patients accepting
//! their invitations) measured RSS growing about 18 MiB per accepted
//! invitation to 3.6 GiB, in arena heaps of 19, 38 and 57 MiB wholly
//! resident (`/proc/PID/smaps`); `MALLOC_ARENA_MAX=2` did not change it.
//! Here at most [`hashing_slots`] hashes run at once (the cores: the work
//! is CPU-bound, more at once only queue for the cores), each in one of at
//! most [`hashing_slots`] blocks of working memory that are kept and
//! reused: the memory is bounded by [`hashing_slots`] x 19 MiB whatever
//! the load (the same run: 131 MiB peak).
//!
//! The hashes are the crate's (`Argon2::hash_password_into_with_memory`
//! with the default parameters, written as the same PHC string), and any
//! argon2 PHC string verifies; the tests hold both against the crate.

use std::sync::{Condvar, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::{PortalError, Result, Secret};

/// How many hashes may run at once (and blocks of working memory exist):
/// the cores, at most 4.
pub fn hashing_slots() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4)
    })
}

struct Pool {
    state: Mutex<(Vec<Box<[Block]>>, usize)>,
    freed: Condvar,
}

fn pool() -> &'static Pool {
    static P: OnceLock<Pool> = OnceLock::new();
    P.get_or_init(|| Pool {
        state: Mutex::new((Vec::new(), 0)),
        freed: Condvar::new(),
    })
}

/// A block of working memory, back to the pool when dropped.
struct Memory(Option<Box<[Block]>>);

impl Memory {
    /// Waits for a free block (made on first use, up to [`hashing_slots`]).
    fn take() -> Memory {
        let p = pool();
        let mut s = p.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(b) = s.0.pop() {
                return Memory(Some(b));
            }
            if s.1 < hashing_slots() {
                s.1 += 1;
                drop(s);
                let blocks = Params::default().block_count();
                return Memory(Some(vec![Block::default(); blocks].into_boxed_slice()));
            }
            s = p.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn blocks(&mut self) -> &mut [Block] {
        self.0.as_deref_mut().unwrap_or(&mut [])
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            let p = pool();
            p.state.lock().unwrap_or_else(|e| e.into_inner()).0.push(b);
            p.freed.notify_one();
        }
    }
}

/// argon2id (the crate's default parameters) with a random 128-bit salt,
/// as a PHC string.
pub fn hash_password(password: &Secret) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|_| PortalError::Invalid("the system's random source failed".into()))?;
    let fail = || PortalError::Invalid("password hashing failed".into());
    let salt_b64 =
        SaltString::encode_b64(&salt).map_err(|_| PortalError::Invalid("password salt".into()))?;
    let params = Params::default();
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let mut mem = Memory::take();
    a.hash_password_into_with_memory(password.expose().as_bytes(), &salt, &mut out, mem.blocks())
        .map_err(|_| fail())?;
    drop(mem);
    let output = argon2::password_hash::Output::new(&out).map_err(|_| fail())?;
    let h = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|_| fail())?,
        salt: Some(salt_b64.as_salt()),
        hash: Some(output),
    };
    Ok(h.to_string())
}

/// Verifies a password against a PHC string, in constant time (the
/// output's comparison is the crate's). A hash that does not parse
/// verifies nothing. Parameters larger than the defaults (a hash made
/// elsewhere) verify with memory of their own, still one of [`hashing_slots`].
pub fn verify_password(password: &Secret, phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let mut mem = Memory::take();
    let pooled = (|| {
        let expected = h.hash?;
        let algorithm = Algorithm::try_from(h.algorithm).ok()?;
        let version = match h.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&h).ok()?;
        if params.block_count() > mem.blocks().len() {
            return None;
        }
        let mut salt = [0u8; 64];
        let salt = h.salt?.decode_b64(&mut salt).ok()?;
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.expose().as_bytes(),
                salt,
                &mut out,
                mem.blocks(),
            )
            .ok()?;
        Some(argon2::password_hash::Output::new(&out).ok()? == expected)
    })();
    match pooled {
        Some(ok) => ok,
        None => Argon2::default()
            .verify_password(password.expose().as_bytes(), &h)
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    fn s(p: &str) -> Secret {
        Secret::new(p.into())
    }

    #[test]
    fn pooled_hashes_are_the_crates() {
        // reused (dirty) memory: several hashes through the same blocks
        let a = hash_password(&s("correct horse battery")).unwrap();
        let b = hash_password(&s("another long password")).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        // the crate's verifier accepts ours...
        let h = PasswordHash::new(&a).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &h)
            .is_ok());
        // ...and ours the crate's, the right password only
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(&s("correct horse battery"), &theirs));
        assert!(!verify_password(&s("correct horse batterY"), &theirs));
        assert!(verify_password(&s("another long password"), &b));
        assert!(!verify_password(&s("correct horse battery"), &b));
        assert!(!verify_password(&s("correct horse battery"), "not a hash"));
    }

    #[test]
    fn other_parameters_verify() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        for (m, t, p, v) in [
            (4096, 3, 1, Version::V0x13),         // smaller: in the pooled memory
            (8192, 1, 2, Version::V0x10),         // two lanes, the old version
            (19456 + 1024, 1, 1, Version::V0x13), // larger: memory of its own
        ] {
            for alg in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
                let a = Argon2::new(alg, v, Params::new(m, t, p, Some(24)).unwrap());
                let phc = a
                    .hash_password(b"a password here", &salt)
                    .unwrap()
                    .to_string();
                assert!(verify_password(&s("a password here"), &phc), "{phc}");
                assert!(!verify_password(&s("a password her"), &phc), "{phc}");
            }
        }
    }

    #[test]
    fn concurrent_hashes_share_the_bounded_memory() {
        let threads: Vec<_> = (0..6)
            .map(|i| {
                std::thread::spawn(move || {
                    let p = s(&format!("password number {i}"));
                    let h = hash_password(&p).unwrap();
                    verify_password(&p, &h)
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        let made = pool().state.lock().unwrap().1;
        assert!(
            made <= hashing_slots(),
            "{made} blocks for {} slots",
            hashing_slots()
        );
    }
}
