//! Host side of the guest agent's serial protocol (see `guest/src/agent.rs`):
//! the host writes `ID COMMAND\n`; the guest answers
//! `@@ID EXIT_CODE LENGTH\n` and LENGTH bytes of output.

use crate::{Error, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a guest command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (128 + signal for a signal death).
    pub code: i32,
    /// Standard output and standard error, interleaved.
    pub text: String,
}

/// A connection to the guest agent.
pub struct Agent {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

/// A parsed reply header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u64,
    pub code: i32,
    pub len: usize,
}

/// Parses `@@ID CODE LEN`; `None` for any other line (console noise).
pub fn parse_header(line: &str) -> Option<Header> {
    let rest = line.trim_end().strip_prefix("@@")?;
    let mut it = rest.split(' ');
    let h = Header {
        id: it.next()?.parse().ok()?,
        code: it.next()?.parse().ok()?,
        len: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(h)
}

impl Agent {
    /// Connects to the agent's socket (QEMU's serial chardev).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::Agent(format!(
                        "connecting to {}: {e}",
                        path.display()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let reader = BufReader::new(
            stream
                .try_clone()
                .map_err(Error::io("cloning the agent socket"))?,
        );
        Ok(Self {
            reader,
            writer: stream,
            next_id: 1,
        })
    }

    /// Sends `command` and waits up to `timeout` for its answer. Answers to
    /// earlier, abandoned commands are skipped.
    ///
    /// A timeout is `Ok(None)`: the caller decides whether the guest is dead.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<Option<Output>> {
        if command.contains('\n') {
            return Err(Error::Agent(format!("commands are one line: {command:?}")));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.writer
            .write_all(format!("{id} {command}\n").as_bytes())
            .map_err(|e| Error::Agent(format!("sending {command:?}: {e}")))?;
        let deadline = Instant::now() + timeout;
        let mut line = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.min(Duration::from_millis(500))))
                .map_err(Error::io("setting the agent read timeout"))?;
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err(Error::Agent("the serial channel closed".into())),
                Ok(_) if !line.ends_with('\n') => continue, // partial line; read on
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // What was read so far stays in `line`; read on.
                    continue;
                }
                Err(e) => return Err(Error::Agent(format!("reading: {e}"))),
            }
            let header = parse_header(&line);
            line.clear();
            let Some(h) = header else { continue };
            self.reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(Error::io("setting the agent read timeout"))?;
            let mut body = vec![0u8; h.len];
            self.reader
                .read_exact(&mut body)
                .map_err(|e| Error::Agent(format!("reading {} output bytes: {e}", h.len)))?;
            if h.id == id {
                return Ok(Some(Output {
                    code: h.code,
                    text: String::from_utf8_lossy(&body).into_owned(),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        assert_eq!(
            parse_header("@@12 0 345\n"),
            Some(Header {
                id: 12,
                code: 0,
                len: 345
            })
        );
        assert_eq!(
            parse_header("@@3 -1 0"),
            Some(Header {
                id: 3,
                code: -1,
                len: 0
            })
        );
        assert_eq!(parse_header("@@3 0"), None);
        assert_eq!(parse_header("@@3 0 1 2"), None);
        assert_eq!(parse_header("[  1.0] @@3 0 1"), None);
        assert_eq!(parse_header("@@x 0 1"), None);
    }

    #[test]
    fn round_trip_over_a_socketpair() {
        let (host, guest) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut r = BufReader::new(guest.try_clone().unwrap());
            let mut w = guest;
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "1 echo hi\n");
            // A stale answer first, then noise, then ours.
            w.write_all(b"@@0 0 3\nold").unwrap();
            w.write_all(b"random console noise\n").unwrap();
            w.write_all(b"@@1 7 3\nhi\n").unwrap();
        });
        let mut a = Agent {
            reader: BufReader::new(host.try_clone().unwrap()),
            writer: host,
            next_id: 1,
        };
        let out = a.run("echo hi", Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!((out.code, out.text.as_str()), (7, "hi\n"));
        server.join().unwrap();
        assert!(a.run("two\nlines", Duration::from_secs(1)).is_err());
    }
}
