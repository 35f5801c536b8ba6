//! AFL++ target: `Authorization`: bearer tokens and Basic client credentials (`warden::fuzzing::authorization`).

fn main() {
    warden::fuzzing::init();
    afl::fuzz!(|data: &[u8]| warden::fuzzing::authorization(data));
}
