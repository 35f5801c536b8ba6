//! AFL++ target: `Content-Digest` and its verifier (`warden::fuzzing::content_digest`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::content_digest(data));
}
