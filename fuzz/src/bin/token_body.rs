//! AFL++ target: the token API's JSON bodies and their checks (`warden::fuzzing::token_body`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::token_body(data));
}
