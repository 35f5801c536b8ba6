//! AFL++ target: scope lists and granting (`warden::fuzzing::scopes`).

fn main() {
    afl::fuzz!(|data: &[u8]| warden::fuzzing::scopes(data));
}
