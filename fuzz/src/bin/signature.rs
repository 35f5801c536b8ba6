//! AFL++ target: `Signature-Input` / `Signature`, then the signature base (`warden::fuzzing::signature`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::signature(data));
}
