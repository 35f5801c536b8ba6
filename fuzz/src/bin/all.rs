//! AFL++ target: every family, the first byte choosing (`warden::fuzzing::dispatch`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::dispatch(data));
}
