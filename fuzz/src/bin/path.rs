//! AFL++ target: request targets: the canonical-path check and the router (`warden::fuzzing::path`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::path(data));
}
