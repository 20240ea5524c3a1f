//! DNS over TCP frames each message with a 2-byte length (RFC 1035 4.2.2).
//! Pure functions, so the server and the fuzz target share the same code.

/// The largest message a frame can carry.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// What the start of a TCP stream's unread bytes holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message; `consumed` bytes (length prefix included) are used.
    Message { message: &'a [u8], consumed: usize },
    /// Not yet a whole frame: `needed` bytes from the start are required.
    Incomplete { needed: usize },
    /// A zero length: no message is that short, the stream is garbage.
    Empty,
}

/// The first frame of `buf`. Never needs more than `2 + MAX_MESSAGE` bytes.
pub fn next_frame(buf: &[u8]) -> Frame<'_> {
    let [hi, lo, rest @ ..] = buf else {
        return Frame::Incomplete { needed: 2 };
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if len == 0 {
        return Frame::Empty;
    }
    match rest.get(..len) {
        Some(message) => Frame::Message {
            message,
            consumed: 2 + len,
        },
        None => Frame::Incomplete { needed: 2 + len },
    }
}

/// `message` with its length prefix, ready to write; `None` when too long.
pub fn frame(message: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_wait() {
        assert_eq!(next_frame(&[]), Frame::Incomplete { needed: 2 });
        assert_eq!(next_frame(&[0]), Frame::Incomplete { needed: 2 });
        assert_eq!(next_frame(&[0, 0, 1]), Frame::Empty);
        assert_eq!(next_frame(&[0, 3, 1, 2]), Frame::Incomplete { needed: 5 });
        assert_eq!(
            next_frame(&[0, 2, 1, 2, 0, 9]),
            Frame::Message {
                message: &[1, 2],
                consumed: 4
            }
        );
        assert_eq!(
            next_frame(&[0xff, 0xff]),
            Frame::Incomplete {
                needed: 2 + MAX_MESSAGE
            }
        );
    }

    #[test]
    fn framing_round_trips() {
        let framed = frame(b"abc").unwrap();
        assert_eq!(framed, b"\x00\x03abc");
        assert_eq!(
            next_frame(&framed),
            Frame::Message {
                message: b"abc",
                consumed: 5
            }
        );
        assert!(frame(&vec![0; MAX_MESSAGE + 1]).is_none());
        assert!(frame(&vec![0; MAX_MESSAGE]).is_some());
    }
}
