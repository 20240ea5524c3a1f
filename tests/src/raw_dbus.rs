//! A D-Bus client written by hand on a unix socket, for what real client
//! libraries refuse to send: a string argument that is not UTF-8, a call
//! whose sender vanishes before the reply, an argument of the wrong type.
//!
//! It speaks just enough of the protocol: SASL EXTERNAL, `Hello`, method
//! calls with a body marshalled by the caller, and reading messages back
//! (little- or big-endian). It only ever talks to the bus socket it is given.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Message types.
pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// Header field codes.
const PATH: u8 = 1;
const INTERFACE: u8 = 2;
const MEMBER: u8 = 3;
const ERROR_NAME: u8 = 4;
const REPLY_SERIAL: u8 = 5;
const DESTINATION: u8 = 6;
const SENDER: u8 = 7;
const SIGNATURE: u8 = 8;

/// One message read from the bus.
#[derive(Clone, Debug, Default)]
pub struct RawMessage {
    pub msg_type: u8,
    pub serial: u32,
    pub reply_serial: Option<u32>,
    pub error_name: Option<String>,
    pub sender: Option<String>,
    pub member: Option<String>,
    pub signature: String,
    /// The body as sent, in the message's byte order.
    pub body: Vec<u8>,
    pub big_endian: bool,
}

impl RawMessage {
    /// The body's first argument as a string, when the signature starts
    /// with `s` (an error's message, Hello's unique name).
    pub fn first_string(&self) -> Option<String> {
        if !self.signature.starts_with('s') || self.body.len() < 4 {
            return None;
        }
        let n = read_u32(&self.body[..4], self.big_endian) as usize;
        let s = self.body.get(4..4 + n)?;
        Some(String::from_utf8_lossy(s).into_owned())
    }
}

/// A connection to a bus, authenticated and registered (Hello done).
pub struct RawConn {
    stream: UnixStream,
    serial: u32,
    unique_name: String,
}

fn pad_to(buf: &mut Vec<u8>, align: usize) {
    buf.resize(buf.len().next_multiple_of(align), 0);
}

fn read_u32(b: &[u8], big_endian: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big_endian {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// A string argument (`s` or `o`) as the wire has it: length, bytes, NUL.
/// The bytes are not checked: this is how a client sends what is not UTF-8.
/// `buf` must be 4-aligned relative to the body's start.
pub fn put_string(buf: &mut Vec<u8>, bytes: &[u8]) {
    pad_to(buf, 4);
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
    buf.push(0);
}

/// A byte array argument (`ay`): length, bytes.
pub fn put_byte_array(buf: &mut Vec<u8>, bytes: &[u8]) {
    pad_to(buf, 4);
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn put_field_str(buf: &mut Vec<u8>, code: u8, sig: u8, value: &str) {
    pad_to(buf, 8);
    buf.extend_from_slice(&[code, 1, sig, 0]);
    put_string(buf, value.as_bytes());
}

fn put_field_sig(buf: &mut Vec<u8>, sig: &str) {
    pad_to(buf, 8);
    buf.extend_from_slice(&[SIGNATURE, 1, b'g', 0]);
    buf.push(sig.len() as u8);
    buf.extend_from_slice(sig.as_bytes());
    buf.push(0);
}

/// The path of a `unix:path=...` address.
fn socket_path(address: &str) -> io::Result<String> {
    let rest = address.strip_prefix("unix:").ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("not unix: {address}"))
    })?;
    rest.split(',')
        .find_map(|kv| kv.strip_prefix("path=").map(str::to_owned))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no path= in {address}"),
            )
        })
}

impl RawConn {
    /// Connects to `address` (`unix:path=...`), authenticates as this
    /// process's uid and says Hello.
    pub fn connect(address: &str) -> io::Result<RawConn> {
        let stream = UnixStream::connect(socket_path(address)?)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut conn = RawConn {
            stream,
            serial: 0,
            unique_name: String::new(),
        };
        conn.auth()?;
        let serial = conn.send_call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            "",
            &[],
        )?;
        let reply = conn.reply_to(serial)?;
        conn.unique_name = reply.first_string().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("Hello: {reply:?}"))
        })?;
        Ok(conn)
    }

    fn auth(&mut self) -> io::Result<()> {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() }.to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.stream
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if self.stream.read(&mut byte)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the bus closed during authentication",
                ));
            }
            line.push(byte[0]);
            if line.len() > 4096 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "auth line too long",
                ));
            }
        }
        if !line.starts_with(b"OK ") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the bus refused: {}", String::from_utf8_lossy(&line)),
            ));
        }
        self.stream.write_all(b"BEGIN\r\n")
    }

    /// Our unique name on the bus.
    pub fn unique_name(&self) -> &str {
        &self.unique_name
    }

    /// Sets how long a read waits.
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(t))
    }

    /// Sends a method call whose body (`signature`, little-endian, starting
    /// 8-aligned) the caller marshalled; returns its serial.
    pub fn send_call(
        &mut self,
        destination: &str,
        path: &str,
        interface: &str,
        member: &str,
        signature: &str,
        body: &[u8],
    ) -> io::Result<u32> {
        self.serial += 1;
        let mut fields = Vec::new();
        put_field_str(&mut fields, PATH, b'o', path);
        put_field_str(&mut fields, INTERFACE, b's', interface);
        put_field_str(&mut fields, MEMBER, b's', member);
        put_field_str(&mut fields, DESTINATION, b's', destination);
        if !signature.is_empty() {
            put_field_sig(&mut fields, signature);
        }
        let mut msg = vec![b'l', METHOD_CALL, 0, 1];
        msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
        msg.extend_from_slice(&self.serial.to_le_bytes());
        msg.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        msg.extend_from_slice(&fields);
        pad_to(&mut msg, 8);
        msg.extend_from_slice(body);
        self.stream.write_all(&msg)?;
        Ok(self.serial)
    }

    /// Reads the next message; `Ok(None)` when the bus closed the
    /// connection.
    pub fn read_message(&mut self) -> io::Result<Option<RawMessage>> {
        let mut fixed = [0u8; 16];
        match self.stream.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        }
        let big_endian = match fixed[0] {
            b'l' => false,
            b'B' => true,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad endianness byte {other:#x}"),
                ))
            }
        };
        let body_len = read_u32(&fixed[4..8], big_endian) as usize;
        let serial = read_u32(&fixed[8..12], big_endian);
        let fields_len = read_u32(&fixed[12..16], big_endian) as usize;
        let padded = (16 + fields_len).div_ceil(8) * 8 - 16;
        let mut rest = vec![0u8; padded + body_len];
        self.stream.read_exact(&mut rest)?;
        let (fields, body) = rest.split_at(padded);
        let mut m = RawMessage {
            msg_type: fixed[1],
            serial,
            body: body.to_vec(),
            big_endian,
            ..Default::default()
        };
        // Offsets inside `fields` are relative to byte 16 of the message,
        // which is 8-aligned, so alignment can be computed on them directly.
        let mut i = 0;
        while i + 4 <= fields_len {
            i = i.div_ceil(8) * 8;
            if i + 4 > fields_len {
                break;
            }
            let code = fields[i];
            let sig_len = fields[i + 1] as usize;
            let sig = fields[i + 2];
            i += 2 + sig_len + 1;
            match sig {
                b's' | b'o' => {
                    i = i.div_ceil(4) * 4;
                    let n = read_u32(&fields[i..i + 4], big_endian) as usize;
                    let s = String::from_utf8_lossy(&fields[i + 4..i + 4 + n]).into_owned();
                    i += 4 + n + 1;
                    match code {
                        ERROR_NAME => m.error_name = Some(s),
                        SENDER => m.sender = Some(s),
                        MEMBER => m.member = Some(s),
                        _ => {}
                    }
                }
                b'g' => {
                    let n = fields[i] as usize;
                    let s = String::from_utf8_lossy(&fields[i + 1..i + 1 + n]).into_owned();
                    i += 1 + n + 1;
                    if code == SIGNATURE {
                        m.signature = s;
                    }
                }
                b'u' => {
                    i = i.div_ceil(4) * 4;
                    let v = read_u32(&fields[i..i + 4], big_endian);
                    i += 4;
                    if code == REPLY_SERIAL {
                        m.reply_serial = Some(v);
                    }
                }
                b'h' => {
                    i = i.div_ceil(4) * 4 + 4;
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected header field type {:?}", other as char),
                    ))
                }
            }
        }
        Ok(Some(m))
    }

    /// Reads messages until the reply (return or error) to `serial`;
    /// skips signals and anything else. An error when the bus closes the
    /// connection first.
    pub fn reply_to(&mut self, serial: u32) -> io::Result<RawMessage> {
        loop {
            match self.read_message()? {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the bus closed the connection before replying",
                    ))
                }
                Some(m)
                    if matches!(m.msg_type, METHOD_RETURN | ERROR)
                        && m.reply_serial == Some(serial) =>
                {
                    return Ok(m)
                }
                Some(_) => {}
            }
        }
    }

    /// Closes the connection at once, whatever is in flight.
    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
