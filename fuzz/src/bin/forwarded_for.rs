//! AFL++ target: `X-Forwarded-For` (`warden::fuzzing::forwarded_for`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::forwarded_for(data));
}
