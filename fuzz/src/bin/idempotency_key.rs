//! AFL++ target: idempotency keys (`warden::fuzzing::idempotency_key`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::idempotency_key(data));
}
