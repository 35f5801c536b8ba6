//! AFL++ target: idempotency keys (`warden::fuzzing::idempotency_key`).

fn main() {
    afl::fuzz!(|data: &[u8]| warden::fuzzing::idempotency_key(data));
}
