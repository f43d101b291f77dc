//! The command channel: the host writes `ID COMMAND\n` on the serial port;
//! the agent runs `/bin/sh -c COMMAND` and answers
//! `@@ID EXIT_CODE LENGTH\n` followed by LENGTH bytes of combined output.
//!
//! Output goes through a file, not a pipe, so a command that starts a
//! background job (`workload ... &`) returns at once instead of waiting for
//! the job to close the pipe.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

const OUTPUT: &str = "/tmp/.agent-output";

/// Serves commands on `tty` until it is closed.
pub fn serve(tty: &str) -> io::Result<()> {
    let port = OpenOptions::new().read(true).write(true).open(tty)?;
    let mut reader = BufReader::new(port.try_clone()?);
    let mut writer = port;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let Some((id, cmd)) = text.split_once(' ') else {
            continue; // noise on the line (e.g. a reconnect); ignore
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let (code, output) = run(cmd);
        writeln!(writer, "@@{id} {code} {}", output.len())?;
        writer.write_all(&output)?;
        writer.flush()?;
    }
}

fn run(cmd: &str) -> (i32, Vec<u8>) {
    let result = (|| -> io::Result<(i32, Vec<u8>)> {
        let out = File::create(OUTPUT)?;
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()?;
        let mut output = Vec::new();
        File::open(OUTPUT)?.read_to_end(&mut output)?;
        // A signal death is reported as 128 + signal, like a shell does.
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        Ok((code, output))
    })();
    result.unwrap_or_else(|e| {
        (
            127,
            format!("agent: cannot run command: {e}\n").into_bytes(),
        )
    })
}
