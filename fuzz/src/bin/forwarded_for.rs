//! AFL++ target: `X-Forwarded-For` (`warden::fuzzing::forwarded_for`).

fn main() {
    afl::fuzz!(|data: &[u8]| warden::fuzzing::forwarded_for(data));
}
