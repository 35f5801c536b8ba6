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
    assert!(verifier.lock().jobs.is_empty());
    assert!(!verifier.lock().leading);
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
            let queued = v.lock().jobs.len();
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
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
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

#[tokio::test]
async fn a_leader_answers_after_its_own_batch_while_others_keep_coming() {
    let verifier = BatchVerifier::new(2);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let (base, sig, key) = signed(0, b"leader");
    let mut leader = Box::pin(verifier.verify(base, sig, key));
    assert!(
        leader.as_mut().poll(&mut cx).is_pending(),
        "leads, yielding"
    );
    let mut followers = Vec::new();
    let mut answered = None;
    // Every round, three more signed requests queue up (more than a batch of two takes),
    // then the leader runs. It must answer after the batch holding its own signature,
    // not when the queue drains (it never does here).
    for round in 0..20u8 {
        for i in 0..3u8 {
            let n = 1 + round * 3 + i;
            let (base, sig, key) = signed(n, &[n; 24]);
            let mut follower = Box::pin(verifier.verify(base, sig, key));
            assert!(follower.as_mut().poll(&mut cx).is_pending(), "queued");
            followers.push(follower);
        }
        if let std::task::Poll::Ready(ok) = leader.as_mut().poll(&mut cx) {
            answered = Some((round, ok));
            break;
        }
    }
    assert_eq!(answered, Some((0, true)), "the leader's answer waited");
    // The lead went on: every follower is answered, by leaders among themselves.
    let mut waiting: Vec<_> = followers.into_iter().map(Some).collect();
    for _ in 0..1000 {
        for slot in waiting.iter_mut() {
            if let Some(f) = slot {
                if let std::task::Poll::Ready(ok) = f.as_mut().poll(&mut cx) {
                    assert!(ok);
                    *slot = None;
                }
            }
        }
    }
    assert!(
        waiting.iter().all(Option::is_none),
        "followers left waiting"
    );
    assert!(verifier.lock().jobs.is_empty());
    assert!(!verifier.lock().leading);
}

#[tokio::test]
async fn a_request_dropped_after_the_lead_was_handed_to_it_passes_it_on() {
    let verifier = BatchVerifier::new(2);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let (base, sig, key) = signed(0, b"leader");
    let mut leader = Box::pin(verifier.verify(base, sig, key));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    let mut queued = Vec::new();
    for n in 1..=4u8 {
        let (base, sig, key) = signed(n, &[n; 8]);
        let mut f = Box::pin(verifier.verify(base, sig, key));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        queued.push(f);
    }
    // The leader verifies itself and request 1, and hands the lead to request 2, which
    // goes away before it runs; request 3 gets the lead instead.
    assert!(matches!(
        leader.as_mut().poll(&mut cx),
        std::task::Poll::Ready(true)
    ));
    let mut third_and_fourth = queued.split_off(2);
    let first = queued.remove(0);
    drop(queued); // request 2
    drop(first); // answered already; dropping it changes nothing
    let answered = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let a = third_and_fourth.remove(0).await;
        let b = third_and_fourth.remove(0).await;
        a && b
    })
    .await;
    assert_eq!(answered, Ok(true));
    assert!(!verifier.lock().leading);
}

fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}

use std::future::Future as _;
