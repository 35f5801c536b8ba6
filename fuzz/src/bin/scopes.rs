//! AFL++ target: scope lists and granting (`warden::fuzzing::scopes`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::scopes(data));
}
