//! AFL++ target: JSON token endpoint bodies (`warden::fuzzing::json_body`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::json_body(data));
}
