//! A small RESP2 client: requests are arrays of bulk strings; replies are
//! read whole, with a time limit.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The longest bulk string or array accepted in a reply.
pub const REPLY_ITEMS_MAX: usize = 1 << 26;
/// Nesting depth of reply arrays accepted.
const REPLY_DEPTH_MAX: usize = 8;

/// One RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// A connection to a server on a Unix socket.
pub struct RespClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RespClient {
    /// Connects to `socket`; each reply must arrive within `timeout`.
    pub fn connect(socket: &Path, timeout: Duration) -> io::Result<RespClient> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(RespClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends every command of `commands` at once (a pipeline), then reads
    /// one reply per command.
    pub fn pipeline(&mut self, commands: &[Vec<&[u8]>]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for command in commands {
            encode(command, &mut out);
        }
        self.writer.write_all(&out)?;
        commands.iter().map(|_| self.read_reply(0)).collect()
    }

    /// One command, one reply.
    pub fn call(&mut self, command: &[&[u8]]) -> io::Result<Reply> {
        let mut replies = self.pipeline(&[command.to_vec()])?;
        Ok(replies.remove(0))
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(io::Error::other("a RESP line without CRLF"));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| io::Error::other("a RESP line is not UTF-8"))
    }

    fn length(text: &str) -> io::Result<Option<usize>> {
        let n: i64 = text
            .parse()
            .map_err(|_| io::Error::other(format!("bad RESP length {text:?}")))?;
        if n < 0 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| io::Error::other("RESP length overflow"))?;
        if n > REPLY_ITEMS_MAX {
            return Err(io::Error::other(format!("RESP length {n} too large")));
        }
        Ok(Some(n))
    }

    fn read_reply(&mut self, depth: usize) -> io::Result<Reply> {
        if depth > REPLY_DEPTH_MAX {
            return Err(io::Error::other("RESP reply nested too deep"));
        }
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Integer(
                rest.parse()
                    .map_err(|_| io::Error::other(format!("bad RESP integer {rest:?}")))?,
            ),
            "$" => match Self::length(rest)? {
                None => Reply::Bulk(None),
                Some(n) => {
                    let mut data = vec![0u8; n + 2];
                    std::io::Read::read_exact(&mut self.reader, &mut data)?;
                    if !data.ends_with(b"\r\n") {
                        return Err(io::Error::other("a bulk string without CRLF"));
                    }
                    data.truncate(n);
                    Reply::Bulk(Some(data))
                }
            },
            "*" => match Self::length(rest)? {
                None => Reply::Array(None),
                Some(n) => Reply::Array(Some(
                    (0..n)
                        .map(|_| self.read_reply(depth + 1))
                        .collect::<io::Result<Vec<Reply>>>()?,
                )),
            },
            _ => return Err(io::Error::other(format!("bad RESP reply {line:?}"))),
        })
    }
}

/// Appends `command` as a RESP array of bulk strings.
pub fn encode(command: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
    for arg in command {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&[b"SET", b"k\r\n", b""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
    }

    #[test]
    fn replies_of_every_kind_parse() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 64];
            let _ = std::io::Read::read(&mut stream, &mut request).unwrap();
            stream
                .write_all(b"*4\r\n+OK\r\n:7\r\n$-1\r\n*2\r\n$2\r\na\0\r\n-ERR no\r\n")
                .unwrap();
        });
        let mut client = RespClient::connect(&socket, Duration::from_secs(5)).unwrap();
        let reply = client.call(&[b"PING"]).unwrap();
        server.join().unwrap();
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Status("OK".into()),
                Reply::Integer(7),
                Reply::Bulk(None),
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"a\0".to_vec())),
                    Reply::Error("ERR no".into()),
                ])),
            ]))
        );
    }
}
