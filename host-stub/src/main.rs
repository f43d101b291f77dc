//! `balloon-host`: thin command-line wrapper around the host-stub library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["status", socket] => match host_stub::status_line(std::path::Path::new(socket)) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("balloon-host: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: balloon-host status QMP_SOCKET\n(the full host stub arrives with issue 5)"
            );
            ExitCode::from(2)
        }
    }
}
