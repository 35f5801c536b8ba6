//! Shared by the fuzz binaries: the targets are `warden::fuzzing`'s entry points, by name.

/// The entry point named `name` (`signature`, `content_digest`, `path`, …, or `all`, which lets
/// the first input byte choose).
pub fn target(name: &str) -> Option<warden::fuzzing::Target> {
    if name == "all" {
        return Some(warden::fuzzing::dispatch);
    }
    warden::fuzzing::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}
