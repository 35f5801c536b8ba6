//! AFL++ target: the token API's JSON bodies and their checks (`warden::fuzzing::token_body`).

fn main() {
    afl::fuzz!(|data: &[u8]| warden::fuzzing::token_body(data));
}
