//! Batch verification of Ed25519 signatures across concurrent requests.
//!
//! One Ed25519 verification costs about 30 µs here; a batch of n verified together (one
//! multiscalar multiplication, `ed25519_dalek::verify_batch`) costs about 20 µs each at n = 4
//! and 16 µs at n = 16 (measured on this machine; `docs/benchmarks.md`). Under load many
//! signed requests reach the check in the same turn of the event loop, so:
//!
//! - the first request to find no leader leads: it yields once, so the requests made ready by
//!   the same turn of the event loop queue up behind it, then verifies one batch (its own
//!   signature and up to `max - 1` queued ones) and returns its own answer at once. If more are
//!   queued, it hands the lead to the oldest waiting request, which does the same on its own
//!   task: no request waits for more than the batches queued ahead of it, however long signed
//!   load lasts, and a burst never holds the runtime for longer than one batch (~1 ms at the
//!   default 64, ~250 µs at 16) without a turn of the event loop in between;
//! - one job alone is verified on its own; a batch that passes answers every job "valid"; a
//!   batch that fails is verified job by job, so every request gets its own answer and an
//!   invalid signature cannot make a valid one fail;
//! - a leader dropped (its client went away) before its batch, or a request dropped after the
//!   lead was handed to it, hands the lead on: no follower is left waiting.
//!
//! Every job has already passed the strict checks of [`super::prepare`] (canonical `R` and `s`,
//! `R` not of small order, key not weak). The one difference from single verification left:
//! the batch equation weights each signature by a random 128-bit scalar, so a signature whose
//! `R` carries a torsion component (mixed order, not small order) may be accepted by a batch
//! although single verification refuses it. Only the key's owner can make such a signature
//! (it needs the private key), and it proves nothing the owner could not sign honestly, so this
//! is not a forgery; `signatures.verify_batch_max = 1` turns batching off for anyone who wants
//! single-verification semantics exactly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::{Signature, VerifyingKey};
use tokio::sync::oneshot;

/// One signature to verify and where its answer goes: `None` for the leader's own job, whose
/// answer the leader keeps (and, in the queue, for the job of a request the lead was handed to).
struct Job {
    base: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
    reply: Option<oneshot::Sender<Answer>>,
}

/// What a waiting request is told.
enum Answer {
    /// Its signature's verdict.
    Verdict(bool),
    /// It leads now: its job is at the front of the queue.
    Lead(Baton),
}

/// The pending verifications and whether someone leads.
struct Queue {
    jobs: VecDeque<Job>,
    /// Set while a request leads or the lead is on its way to one. While it is unset, the
    /// queue is empty.
    leading: bool,
}

/// The shared queue of pending verifications.
#[derive(Clone)]
pub struct BatchVerifier {
    queue: Arc<Mutex<Queue>>,
    max: usize,
}

impl BatchVerifier {
    /// A verifier that puts at most `max` signatures in one batch (`1`: no batching).
    pub fn new(max: usize) -> Self {
        Self {
            queue: Arc::new(Mutex::new(Queue {
                jobs: VecDeque::new(),
                leading: false,
            })),
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `signature` over `base` verifies with `key`, with the other signatures being
    /// verified at the same time. The caller has run [`super::prepare`]'s checks.
    pub async fn verify(&self, base: Vec<u8>, signature: Signature, key: VerifyingKey) -> bool {
        if self.max == 1 {
            return single(&base, &signature, &key);
        }
        let mut job = Job {
            base,
            signature,
            key,
            reply: None,
        };
        let waiting = {
            let mut queue = self.lock();
            if queue.leading {
                let (reply, answer) = oneshot::channel();
                job.reply = Some(reply);
                queue.jobs.push_back(job);
                Some(answer)
            } else {
                queue.leading = true;
                queue.jobs.push_back(job);
                None
            }
        };
        let baton = match waiting {
            None => Baton(Some(self.clone())),
            Some(answer) => match answer.await {
                Ok(Answer::Verdict(ok)) => return ok,
                Ok(Answer::Lead(baton)) => baton,
                // A job is always answered or handed the lead; refuse to be safe.
                Err(_) => return false,
            },
        };
        // Let the requests made ready in this turn of the event loop join the batch.
        tokio::task::yield_now().await;
        let jobs: Vec<Job> = {
            let mut queue = self.lock();
            let n = queue.jobs.len().min(self.max);
            queue.jobs.drain(..n).collect()
        };
        // The job at the front was this request's: it is in this batch.
        let ok = verify_jobs(jobs);
        drop(baton);
        ok
    }

    /// Hands the lead to the oldest waiting request, whose job is at the front of the queue,
    /// or ends it when none is waiting. Only the holder of the lead calls this.
    fn pass_on(&self) {
        loop {
            let reply = {
                let mut queue = self.lock();
                let Some(front) = queue.jobs.front_mut() else {
                    queue.leading = false;
                    return;
                };
                match front.reply.take() {
                    Some(reply) => reply,
                    None => {
                        // The job of a leader dropped before its batch: nobody waits for it.
                        queue.jobs.pop_front();
                        continue;
                    }
                }
            };
            // Sent outside the lock: a baton that comes back is dropped (and would lock).
            match reply.send(Answer::Lead(Baton(Some(self.clone())))) {
                Ok(()) => return,
                Err(Answer::Lead(mut baton)) => {
                    // Its request is gone: its job goes too, and the next one is asked.
                    baton.0 = None;
                    self.lock().jobs.pop_front();
                }
                Err(Answer::Verdict(_)) => {}
            }
        }
    }
}

/// The lead. Dropped (after the batch, or with a request that went away while holding it or
/// before it received it), it passes on to the next waiting request.
struct Baton(Option<BatchVerifier>);

impl Drop for Baton {
    fn drop(&mut self) {
        if let Some(verifier) = self.0.take() {
            verifier.pass_on();
        }
    }
}

/// Ed25519 as [`super::verify_ed25519`] has it, for jobs whose strict checks are done.
fn single(base: &[u8], signature: &Signature, key: &VerifyingKey) -> bool {
    use ed25519_dalek::Verifier as _;
    key.verify(base, signature).is_ok()
}

/// Verifies `jobs` and answers them; returns the answer of the one without a reply (the
/// leader's own; `false` if there is none).
fn verify_jobs(jobs: Vec<Job>) -> bool {
    let mut own = false;
    let mut answer = |reply: Option<oneshot::Sender<Answer>>, ok: bool| match reply {
        Some(reply) => {
            let _ = reply.send(Answer::Verdict(ok));
        }
        None => own = ok,
    };
    if let [job] = jobs.as_slice() {
        let ok = single(&job.base, &job.signature, &job.key);
        if let Some(job) = jobs.into_iter().next() {
            answer(job.reply, ok);
        }
        return own;
    }
    let messages: Vec<&[u8]> = jobs.iter().map(|j| j.base.as_slice()).collect();
    let signatures: Vec<Signature> = jobs.iter().map(|j| j.signature).collect();
    let keys: Vec<VerifyingKey> = jobs.iter().map(|j| j.key).collect();
    let all_valid = ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    drop(messages);
    for job in jobs {
        let ok = all_valid || single(&job.base, &job.signature, &job.key);
        answer(job.reply, ok);
    }
    own
}

#[cfg(test)]
mod tests;
