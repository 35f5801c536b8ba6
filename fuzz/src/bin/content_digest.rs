//! AFL++ target: `Content-Digest` and its verifier (`warden::fuzzing::content_digest`).

fn main() {
    afl::fuzz!(|data: &[u8]| warden::fuzzing::content_digest(data));
}
