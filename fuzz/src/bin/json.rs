//! AFL++ target: JSON token endpoint bodies (`warden::fuzzing::json_body`).

fn main() {
    afl::fuzz!(|data: &[u8]| warden::fuzzing::json_body(data));
}
