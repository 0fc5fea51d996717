//! A minimal client of PostgreSQL's frontend/backend protocol (version 3):
//! a Unix-socket connection with trust authentication and the simple query
//! protocol, which is all the target needs (one round trip per
//! transaction, text results). It keeps the harness free of an async
//! runtime that the `postgres` crate would bring.
//!
//! Protocol reference: <https://www.postgresql.org/docs/15/protocol-message-formats.html>.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The protocol version 3.0 in a startup message.
const PROTOCOL_V3: i32 = 196_608;
/// The longest backend message accepted.
pub const MESSAGE_BYTES_MAX: usize = 256 << 20;

/// An `ErrorResponse` from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC`.
    pub severity: String,
    /// The SQLSTATE (`XX001`: data corrupted).
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

/// How a request failed.
#[derive(Debug)]
pub enum WireError {
    /// The server answered with an error.
    Server(ServerError),
    /// The connection failed (the server died, a timeout, a bad message).
    Io(io::Error),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Server(error) => write!(f, "the server said {error}"),
            WireError::Io(error) => write!(f, "the connection failed: {error}"),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(error: io::Error) -> WireError {
        WireError::Io(error)
    }
}

/// What one simple query returned: the rows of its statements (text
/// format, `None` for NULL) and every command tag, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    pub tags: Vec<String>,
}

/// One connection as the `postgres` role to database `postgres`.
pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    /// Connects to the server whose socket is `socket` and waits for
    /// `ReadyForQuery`, each read waiting at most `timeout`.
    pub fn connect(socket: &Path, user: &str, timeout: Duration) -> Result<Connection, WireError> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut connection = Connection { stream };
        let mut body = PROTOCOL_V3.to_be_bytes().to_vec();
        for (key, value) in [("user", user), ("database", "postgres")] {
            body.extend_from_slice(key.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut message = (body.len() as i32 + 4).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        connection.stream.write_all(&message)?;
        loop {
            let (kind, body) = connection.read_message()?;
            match kind {
                b'R' => {
                    let code = body
                        .get(..4)
                        .map(|b| i32::from_be_bytes(b.try_into().unwrap()));
                    if code != Some(0) {
                        return Err(WireError::Io(io::Error::other(format!(
                            "the server asks for authentication {code:?}; the cluster trusts local connections"
                        ))));
                    }
                }
                b'E' => return Err(WireError::Server(parse_error(&body))),
                b'Z' => return Ok(connection),
                // ParameterStatus, BackendKeyData, NoticeResponse.
                _ => {}
            }
        }
    }

    /// Runs `sql` (one or more statements) with the simple query protocol
    /// and reads every answer up to `ReadyForQuery`.
    pub fn query(&mut self, sql: &str) -> Result<QueryResult, WireError> {
        assert!(!sql.contains('\0'), "a query has no NUL");
        let mut message = vec![b'Q'];
        message.extend_from_slice(&(sql.len() as i32 + 5).to_be_bytes());
        message.extend_from_slice(sql.as_bytes());
        message.push(0);
        self.stream.write_all(&message)?;
        let mut result = QueryResult::default();
        let mut error = None;
        loop {
            let (kind, body) = self.read_message()?;
            match kind {
                b'D' => result.rows.push(parse_row(&body)?),
                b'C' => result.tags.push(cstring(&body)),
                b'E' => {
                    let parsed = parse_error(&body);
                    let fatal = parsed.severity == "FATAL" || parsed.severity == "PANIC";
                    error = Some(parsed);
                    if fatal {
                        // The server closes the connection after it.
                        break;
                    }
                }
                b'Z' => break,
                // RowDescription, EmptyQueryResponse, NoticeResponse, ...
                _ => {}
            }
        }
        match error {
            Some(error) => Err(WireError::Server(error)),
            None => Ok(result),
        }
    }

    /// Says goodbye (`Terminate`) and closes.
    pub fn terminate(mut self) {
        let _ = self.stream.write_all(&[b'X', 0, 0, 0, 4]);
    }

    fn read_message(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut header = [0u8; 5];
        self.stream.read_exact(&mut header)?;
        let len = i32::from_be_bytes(header[1..].try_into().expect("4 bytes"));
        let len = usize::try_from(len)
            .ok()
            .filter(|len| (4..=MESSAGE_BYTES_MAX).contains(len))
            .ok_or_else(|| io::Error::other(format!("a message of bad length {len}")))?;
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body)?;
        Ok((header[0], body))
    }
}

fn cstring(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn parse_error(body: &[u8]) -> ServerError {
    let mut error = ServerError {
        severity: String::new(),
        code: String::new(),
        message: String::new(),
    };
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match field {
            b'V' => error.severity = value,
            b'S' if error.severity.is_empty() => error.severity = value,
            b'C' => error.code = value,
            b'M' => error.message = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    error
}

fn parse_row(body: &[u8]) -> io::Result<Vec<Option<Vec<u8>>>> {
    let bad = || io::Error::other("a malformed DataRow");
    let count = u16::from_be_bytes(body.get(..2).ok_or_else(bad)?.try_into().expect("2"));
    let mut at = 2;
    let mut row = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = i32::from_be_bytes(body.get(at..at + 4).ok_or_else(bad)?.try_into().expect("4"));
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = len as usize;
        row.push(Some(body.get(at..at + len).ok_or_else(bad)?.to_vec()));
        at += len;
    }
    Ok(row)
}

/// A `bytea` literal in hex form (`'\x0a0b'`).
pub fn bytea_literal(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2 + 5);
    text.push_str("'\\x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('\'');
    text
}

/// A `bytea` value in its text output form (`\x0a0b`).
pub fn parse_bytea(text: &[u8]) -> Option<Vec<u8>> {
    let hex = text.strip_prefix(b"\\x")?;
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bytea_literals_read_back(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let literal = bytea_literal(&bytes);
            let text = literal.trim_matches('\'');
            prop_assert_eq!(parse_bytea(text.as_bytes()), Some(bytes));
        }
    }

    #[test]
    fn error_fields_and_rows_parse() {
        let body = b"SERROR\0VERROR\0CXX001\0Minvalid page in block 3\0\0";
        let error = parse_error(body);
        assert_eq!(error.severity, "ERROR");
        assert_eq!(error.code, "XX001");
        assert_eq!(error.message, "invalid page in block 3");
        let row = [0u8, 2, 0, 0, 0, 2, b'h', b'i', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(parse_row(&row).unwrap(), vec![Some(b"hi".to_vec()), None]);
        assert!(parse_row(&[0, 1, 0, 0, 0, 9]).is_err());
        assert_eq!(parse_bytea(b"\\x0"), None);
        assert_eq!(parse_bytea(b"0a"), None);
    }
}
