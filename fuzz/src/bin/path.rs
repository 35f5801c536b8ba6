//! AFL++ target: request targets: the canonical-path check and the router (`warden::fuzzing::path`).

fn main() {
    afl::fuzz!(|data: &[u8]| warden::fuzzing::path(data));
}
