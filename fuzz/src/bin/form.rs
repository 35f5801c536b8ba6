//! AFL++ target: form-encoded token endpoint bodies (`warden::fuzzing::form_body`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::form_body(data));
}
