//! `balloon-host`: thin command-line wrapper around the host-stub library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
