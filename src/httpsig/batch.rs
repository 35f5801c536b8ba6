//! Batch verification of Ed25519 signatures across concurrent requests.
//!
//! One Ed25519 verification costs about 30 µs here; a batch of n verified together (one
//! multiscalar multiplication, `ed25519_dalek::verify_batch`) costs about 20 µs each at n = 4
//! and 16 µs at n = 16 (measured on this machine; `docs/benchmarks.md`). Under load many
//! signed requests reach the check in the same turn of the event loop, so:
//!
//! - a request puts its (base, signature, key) in the queue; the one that finds it empty leads:
//!   it yields once, so the requests made ready by the same turn of the event loop join, then
//!   verifies up to `max` jobs at a time, yielding between batches so that a burst never holds
//!   the runtime for longer than one batch (~1 ms at the default 64, ~250 µs at 16);
//! - one job alone is verified on its own; a batch that passes answers every job "valid"; a
//!   batch that fails is verified job by job, so every request gets its own answer and an
//!   invalid signature cannot make a valid one fail;
//! - if the leader is dropped (its client went away) before it ran the batch, its drop runs it:
//!   no follower is left waiting.
//!
//! Every job has already passed the strict checks of [`super::prepare`] (canonical `R` and `s`,
//! `R` not of small order, key not weak). The one difference from single verification left:
//! the batch equation weights each signature by a random 128-bit scalar, so a signature whose
//! `R` carries a torsion component (mixed order, not small order) may be accepted by a batch
//! although single verification refuses it. Only the key's owner can make such a signature
//! (it needs the private key), and it proves nothing the owner could not sign honestly, so this
//! is not a forgery; `signatures.verify_batch_max = 1` turns batching off for anyone who wants
//! single-verification semantics exactly.

use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::{Signature, VerifyingKey};
use tokio::sync::oneshot;

/// One signature to verify and where its answer goes.
struct Job {
    base: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
    reply: oneshot::Sender<bool>,
}

/// The shared queue of pending verifications.
#[derive(Clone)]
pub struct BatchVerifier {
    queue: Arc<Mutex<Vec<Job>>>,
    max: usize,
}

impl BatchVerifier {
    /// A verifier that puts at most `max` signatures in one batch (`1`: no batching).
    pub fn new(max: usize) -> Self {
        Self {
            queue: Arc::new(Mutex::new(Vec::new())),
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Job>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `signature` over `base` verifies with `key`, with the other signatures being
    /// verified at the same time. The caller has run [`super::prepare`]'s checks.
    pub async fn verify(&self, base: Vec<u8>, signature: Signature, key: VerifyingKey) -> bool {
        if self.max == 1 {
            return single(&base, &signature, &key);
        }
        let (reply, answer) = oneshot::channel();
        let leads = {
            let mut queue = self.lock();
            queue.push(Job {
                base,
                signature,
                key,
                reply,
            });
            queue.len() == 1
        };
        if leads {
            let mut lead = Lead {
                verifier: self,
                done: false,
            };
            // Let the requests that became ready in this turn of the event loop join.
            tokio::task::yield_now().await;
            // One batch at a time, yielding between them: a burst of signed requests never
            // holds the runtime for more than one batch's verification (max × ~16 µs).
            while lead.verifier.run_one() {
                tokio::task::yield_now().await;
            }
            lead.done = true;
        }
        // A dropped sender means the job was lost, which `Lead` prevents; refuse to be safe.
        answer.await.unwrap_or(false)
    }

    /// Takes and verifies up to `max` queued jobs; true when more are waiting.
    fn run_one(&self) -> bool {
        let jobs: Vec<Job> = {
            let mut queue = self.lock();
            let n = queue.len().min(self.max);
            queue.drain(..n).collect()
        };
        if jobs.is_empty() {
            return false;
        }
        verify_jobs(jobs);
        !self.lock().is_empty()
    }

    /// Takes and verifies everything queued, `max` at a time.
    fn run_queued(&self) {
        loop {
            let jobs: Vec<Job> = {
                let mut queue = self.lock();
                let n = queue.len().min(self.max);
                queue.drain(..n).collect()
            };
            if jobs.is_empty() {
                return;
            }
            verify_jobs(jobs);
        }
    }
}

/// The leader's duty, done on drop if the leader is cancelled first.
struct Lead<'a> {
    verifier: &'a BatchVerifier,
    done: bool,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.verifier.run_queued();
        }
    }
}

/// Ed25519 as [`super::verify_ed25519`] has it, for jobs whose strict checks are done.
fn single(base: &[u8], signature: &Signature, key: &VerifyingKey) -> bool {
    use ed25519_dalek::Verifier as _;
    key.verify(base, signature).is_ok()
}

fn verify_jobs(jobs: Vec<Job>) {
    if let [job] = jobs.as_slice() {
        let ok = single(&job.base, &job.signature, &job.key);
        if let Some(job) = jobs.into_iter().next() {
            let _ = job.reply.send(ok);
        }
        return;
    }
    let messages: Vec<&[u8]> = jobs.iter().map(|j| j.base.as_slice()).collect();
    let signatures: Vec<Signature> = jobs.iter().map(|j| j.signature).collect();
    let keys: Vec<VerifyingKey> = jobs.iter().map(|j| j.key).collect();
    let all_valid = ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    drop(messages);
    for job in jobs {
        let ok = all_valid || single(&job.base, &job.signature, &job.key);
        let _ = job.reply.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(seed: u8, msg: &[u8]) -> (Vec<u8>, Signature, VerifyingKey) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        (msg.to_vec(), key.sign(msg), key.verifying_key())
    }

    #[tokio::test]
    async fn concurrent_signatures_are_verified_together_and_each_gets_its_answer() {
        let verifier = BatchVerifier::new(64);
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            let v = verifier.clone();
            let (base, sig, key) = signed(i, format!("request {i}").as_bytes());
            // Every third one is tampered with: its base is not what was signed.
            let base = if i % 3 == 0 {
                format!("request {i}!").into_bytes()
            } else {
                base
            };
            tasks.push(tokio::spawn(
                async move { (i, v.verify(base, sig, key).await) },
            ));
        }
        for t in tasks {
            let (i, ok) = t.await.unwrap();
            assert_eq!(ok, i % 3 != 0, "request {i}");
        }
        assert!(verifier.lock().is_empty());
    }

    #[tokio::test]
    async fn a_lone_signature_is_verified_on_its_own() {
        let verifier = BatchVerifier::new(64);
        let (base, sig, key) = signed(1, b"alone");
        assert!(verifier.verify(base, sig, key).await);
        let (_, sig, key) = signed(1, b"alone");
        assert!(!verifier.verify(b"other".to_vec(), sig, key).await);
    }

    #[tokio::test]
    async fn a_batch_bigger_than_max_is_split() {
        let verifier = BatchVerifier::new(3);
        let mut tasks = Vec::new();
        for i in 0..10u8 {
            let v = verifier.clone();
            let (base, sig, key) = signed(i, &[i; 40]);
            tasks.push(tokio::spawn(async move { v.verify(base, sig, key).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
    }

    #[tokio::test]
    async fn other_tasks_run_between_batches() {
        let verifier = BatchVerifier::new(2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (v, log) = (verifier.clone(), seen.clone());
        // Looks at the queue on every turn of the runtime.
        let watcher = tokio::spawn(async move {
            for _ in 0..50 {
                let queued = v.lock().len();
                log.lock().unwrap().push(queued);
                tokio::task::yield_now().await;
            }
        });
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let v = verifier.clone();
            let (base, sig, key) = signed(i, &[i; 16]);
            tasks.push(tokio::spawn(async move { v.verify(base, sig, key).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        watcher.await.unwrap();
        let seen = seen.lock().unwrap();
        // Eight queued, verified two at a time: the watcher ran while some were still queued.
        assert!(
            seen.iter().any(|&n| n > 0 && n < 8),
            "the queue went from full to empty in one go: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_non_canonical_s_fails_in_a_batch_too() {
        let verifier = BatchVerifier::new(64);
        let (base, sig, key) = signed(7, b"malleable");
        // s + L: the same point equation, a non-canonical encoding.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut bytes = sig.to_bytes();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(bytes[32 + i]) + u16::from(l[i]) + carry;
            bytes[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        let bad = Signature::from_bytes(&bytes);
        let (b2, s2, k2) = signed(8, b"honest");
        let v = verifier.clone();
        let honest = tokio::spawn(async move { v.verify(b2, s2, k2).await });
        assert!(!verifier.verify(base, bad, key).await);
        assert!(honest.await.unwrap());
    }

    #[tokio::test]
    async fn a_cancelled_leader_still_answers_its_followers() {
        let verifier = BatchVerifier::new(64);
        let (base, sig, key) = signed(1, b"leader");
        let mut leader = Box::pin(verifier.verify(base, sig, key));
        // Polled once: it queued its job and is yielding.
        let waker = futures_noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        let v = verifier.clone();
        let (b2, s2, k2) = signed(2, b"follower");
        let follower = tokio::spawn(async move { v.verify(b2, s2, k2).await });
        tokio::task::yield_now().await;
        drop(leader);
        let answered = tokio::time::timeout(std::time::Duration::from_secs(5), follower).await;
        assert!(answered.expect("the follower was answered").unwrap());
    }

    fn futures_noop_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }

    use std::future::Future as _;
}
