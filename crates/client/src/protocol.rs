//! The client protocol: length-prefixed binary frames over TCP.
//!
//! Every frame is a `u32` little-endian body length, then the body: a tag
//! byte and the tag's fields (integers little-endian; keys as `u16` length
//! and bytes, values as `u32` length and bytes). A connection opens with
//! `Hello` (magic, version, session, last zxid seen, the session's previous
//! binding if any, token) and the server answers `Welcome` (with the new
//! binding) or `Error`. After that a client may send many requests
//! without waiting; the server answers each in order.
//!
//! Decoding is total: any byte string is a valid message or an error, never
//! a panic; trailing bytes are an error.

/// First bytes of a Hello.
pub const MAGIC: [u8; 4] = *b"RZB1";
pub const VERSION: u8 = 2;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

const T_HELLO: u8 = 0x01;
const T_GET: u8 = 0x02;
const T_SYNC_GET: u8 = 0x03;
const T_PUT: u8 = 0x04;
const T_DELETE: u8 = 0x05;
const R_WELCOME: u8 = 0x81;
const R_VALUE: u8 = 0x82;
const R_NOT_FOUND: u8 = 0x83;
const R_WRITTEN: u8 = 0x84;
const R_ERROR: u8 = 0x85;

/// A client's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Opens a session (`session` 0: a new one) or continues one: the server
    /// answers only once it has applied everything up to `last_zxid`.
    Hello {
        session: u64,
        last_zxid: u64,
        /// The binding of the session's last connection: the server fences
        /// it off, so none of that connection's writes still on their way
        /// can apply after this one's (FIFO order across replicas).
        prev: Option<Binding>,
        token: &'a [u8],
    },
    /// A read served from the replica's local state.
    Get {
        key: &'a [u8],
    },
    /// A linearizable read: served once the replica has applied every write
    /// committed when the request arrived.
    SyncGet {
        key: &'a [u8],
    },
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        key: &'a [u8],
    },
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WriteOutcome {
    /// A put stored its value.
    Stored = 1,
    /// A delete removed the key.
    Deleted = 2,
    /// A delete found no such key.
    Absent = 3,
    /// Applied during a fail-over: its effect was not reported.
    Unknown = 4,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The frame could not be decoded; the server closes the connection.
    Malformed = 1,
    /// The frame is longer than the server accepts; the connection closes.
    TooLarge = 2,
    KeyTooLong = 3,
    ValueTooLong = 4,
    /// The handshake's token is wrong; the connection closes.
    Unauthorized = 5,
    /// The replica is not serving (election, catching up, stopping).
    NotServing = 6,
    /// A put of a new key found the store full; nothing changed.
    StoreFull = 7,
    /// Another protocol version; the connection closes.
    BadVersion = 8,
    /// The server has no room for another session; the connection closes.
    Busy = 9,
    EmptyKey = 10,
    Internal = 11,
}

impl ErrorCode {
    fn from_u8(v: u8) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => Malformed,
            2 => TooLarge,
            3 => KeyTooLong,
            4 => ValueTooLong,
            5 => Unauthorized,
            6 => NotServing,
            7 => StoreFull,
            8 => BadVersion,
            9 => Busy,
            10 => EmptyKey,
            11 => Internal,
            _ => return None,
        })
    }
}

/// Where a connection's writes are numbered: a session slot of one lane of
/// one replica, in one generation (each connection starts a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub node: u8,
    pub lane: u8,
    pub session: u32,
    pub generation: u64,
}

const BINDING_LEN: usize = 1 + 1 + 4 + 8;

impl Binding {
    fn encode(&self, o: &mut Vec<u8>) {
        o.push(self.node);
        o.push(self.lane);
        o.extend_from_slice(&self.session.to_le_bytes());
        o.extend_from_slice(&self.generation.to_le_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Binding, DecodeError> {
        Ok(Binding {
            node: r.u8()?,
            lane: r.u8()?,
            session: r.u32()?,
            generation: r.u64()?,
        })
    }
}

/// A server's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    Welcome {
        session: u64,
        /// The replica's applied point when the session was admitted.
        zxid: u64,
        node: u8,
        max_key: u16,
        max_value: u32,
        max_inflight: u32,
        /// This connection's binding, for the next Hello's `prev`.
        binding: Binding,
    },
    /// `zxid`: the replica's applied point before the read (what the
    /// session has now seen); `version`: the zxid of the write that stored
    /// the value.
    Value {
        zxid: u64,
        version: u64,
        value: &'a [u8],
    },
    NotFound {
        zxid: u64,
    },
    /// `zxid`: the write's own id.
    Written {
        zxid: u64,
        outcome: WriteOutcome,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
    },
}

/// Why bytes did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame ends early")]
    Truncated,
    #[error("unknown message tag {0:#04x}")]
    BadTag(u8),
    #[error("{0} bytes after the message")]
    Trailing(usize),
    #[error("bad magic: not an rzab client")]
    BadMagic,
    #[error("unknown write outcome {0}")]
    BadOutcome(u8),
    #[error("unknown error code {0}")]
    BadCode(u8),
    #[error("error message is not UTF-8")]
    BadText,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("a presence flag is {0}, not 0 or 1")]
    BadFlag(u8),
}

/// A body parsed from the front.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn key(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn value(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn end(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Appends a frame: reserves the length prefix, lets `body` write, patches it.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    body(out);
    let len = (out.len() - at - LEN_PREFIX) as u32;
    out[at..at + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
}

fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    // Longer keys are refused before encoding (the client's and the
    // server's key limits are far below this).
    let n = key.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&key[..n]);
}

fn put_value(out: &mut Vec<u8>, v: &[u8]) {
    let n = v.len().min(u32::MAX as usize);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&v[..n]);
}

impl<'a> Request<'a> {
    /// Appends this request as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame(out, |o| match *self {
            Request::Hello {
                session,
                last_zxid,
                prev,
                token,
            } => {
                o.push(T_HELLO);
                o.extend_from_slice(&MAGIC);
                o.push(VERSION);
                o.extend_from_slice(&session.to_le_bytes());
                o.extend_from_slice(&last_zxid.to_le_bytes());
                match prev {
                    Some(b) => {
                        o.push(1);
                        b.encode(o);
                    }
                    None => o.push(0),
                }
                put_key(o, token);
            }
            Request::Get { key } => {
                o.push(T_GET);
                put_key(o, key);
            }
            Request::SyncGet { key } => {
                o.push(T_SYNC_GET);
                put_key(o, key);
            }
            Request::Put { key, value } => {
                o.push(T_PUT);
                put_key(o, key);
                put_value(o, value);
            }
            Request::Delete { key } => {
                o.push(T_DELETE);
                put_key(o, key);
            }
        });
    }

    /// About the bytes [`Request::encode`] appends (room to reserve).
    pub fn encoded_len_hint(&self) -> usize {
        let fixed = LEN_PREFIX + 1 + 2 + 4;
        fixed
            + match *self {
                Request::Hello { token, .. } => 4 + 1 + 16 + 1 + BINDING_LEN + token.len(),
                Request::Get { key } | Request::SyncGet { key } | Request::Delete { key } => key.len(),
                Request::Put { key, value } => key.len() + value.len(),
            }
    }

    /// Decodes a frame body. A Hello's version is returned as is: the
    /// server answers another version with an error it can still read.
    pub fn decode(body: &'a [u8]) -> Result<(Request<'a>, u8), DecodeError> {
        let mut r = Reader { buf: body };
        let mut version = VERSION;
        let req = match r.u8()? {
            T_HELLO => {
                if r.take(4)? != MAGIC {
                    return Err(DecodeError::BadMagic);
                }
                version = r.u8()?;
                if version != VERSION {
                    // The rest may be laid out otherwise: the caller
                    // refuses the version, not the bytes.
                    return Ok((
                        Request::Hello {
                            session: 0,
                            last_zxid: 0,
                            prev: None,
                            token: &[],
                        },
                        version,
                    ));
                }
                let session = r.u64()?;
                let last_zxid = r.u64()?;
                let prev = match r.u8()? {
                    0 => None,
                    1 => Some(Binding::decode(&mut r)?),
                    f => return Err(DecodeError::BadFlag(f)),
                };
                Request::Hello {
                    session,
                    last_zxid,
                    prev,
                    token: r.key()?,
                }
            }
            T_GET => Request::Get { key: r.key()? },
            T_SYNC_GET => Request::SyncGet { key: r.key()? },
            T_PUT => Request::Put {
                key: r.key()?,
                value: r.value()?,
            },
            T_DELETE => Request::Delete { key: r.key()? },
            t => return Err(DecodeError::BadTag(t)),
        };
        r.end()?;
        Ok((req, version))
    }
}

impl<'a> Reply<'a> {
    /// Appends this reply as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame(out, |o| match *self {
            Reply::Welcome {
                session,
                zxid,
                node,
                max_key,
                max_value,
                max_inflight,
                binding,
            } => {
                o.push(R_WELCOME);
                o.extend_from_slice(&session.to_le_bytes());
                o.extend_from_slice(&zxid.to_le_bytes());
                o.push(node);
                o.extend_from_slice(&max_key.to_le_bytes());
                o.extend_from_slice(&max_value.to_le_bytes());
                o.extend_from_slice(&max_inflight.to_le_bytes());
                binding.encode(o);
            }
            Reply::Value { zxid, version, value } => {
                o.push(R_VALUE);
                o.extend_from_slice(&zxid.to_le_bytes());
                o.extend_from_slice(&version.to_le_bytes());
                put_value(o, value);
            }
            Reply::NotFound { zxid } => {
                o.push(R_NOT_FOUND);
                o.extend_from_slice(&zxid.to_le_bytes());
            }
            Reply::Written { zxid, outcome } => {
                o.push(R_WRITTEN);
                o.extend_from_slice(&zxid.to_le_bytes());
                o.push(outcome as u8);
            }
            Reply::Error { code, message } => {
                o.push(R_ERROR);
                o.push(code as u8);
                // At most 1 KiB, cut on a character boundary (the
                // receiver checks it is UTF-8).
                let mut n = message.len().min(1024);
                while !message.is_char_boundary(n) {
                    n -= 1;
                }
                put_key(o, &message.as_bytes()[..n]);
            }
        });
    }

    pub fn decode(body: &'a [u8]) -> Result<Reply<'a>, DecodeError> {
        let mut r = Reader { buf: body };
        let reply = match r.u8()? {
            R_WELCOME => Reply::Welcome {
                session: r.u64()?,
                zxid: r.u64()?,
                node: r.u8()?,
                max_key: r.u16()?,
                max_value: r.u32()?,
                max_inflight: r.u32()?,
                binding: Binding::decode(&mut r)?,
            },
            R_VALUE => Reply::Value {
                zxid: r.u64()?,
                version: r.u64()?,
                value: r.value()?,
            },
            R_NOT_FOUND => Reply::NotFound { zxid: r.u64()? },
            R_WRITTEN => {
                let zxid = r.u64()?;
                let outcome = match r.u8()? {
                    1 => WriteOutcome::Stored,
                    2 => WriteOutcome::Deleted,
                    3 => WriteOutcome::Absent,
                    4 => WriteOutcome::Unknown,
                    o => return Err(DecodeError::BadOutcome(o)),
                };
                Reply::Written { zxid, outcome }
            }
            R_ERROR => {
                let c = r.u8()?;
                let code = ErrorCode::from_u8(c).ok_or(DecodeError::BadCode(c))?;
                let text = r.key()?;
                let message = std::str::from_utf8(text).map_err(|_| DecodeError::BadText)?;
                Reply::Error { code, message }
            }
            t => return Err(DecodeError::BadTag(t)),
        };
        r.end()?;
        Ok(reply)
    }
}

/// The next whole frame at the front of `buf`: `Ok(Some((body, used)))`,
/// `Ok(None)` if more bytes are needed, or `TooLarge` past `max` body bytes
/// (checked from the prefix alone, before buffering the body).
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max {
        return Err(DecodeError::TooLarge { len, max });
    }
    Ok(buf
        .get(LEN_PREFIX..LEN_PREFIX + len)
        .map(|body| (body, LEN_PREFIX + len)))
}

/// Why [`read_frame`] stopped.
#[derive(Debug)]
pub enum ReadFrameError {
    /// The stream ended before a whole frame.
    Closed,
    Io(std::io::Error),
    /// The length prefix is past the limit.
    Frame(DecodeError),
}

/// Reads from `r` until `buf` holds a whole frame; returns its body's
/// range in `buf` (a handshake's first frame: later frames are parsed from
/// the buffer with [`next_frame`]).
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<std::ops::Range<usize>, ReadFrameError> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    loop {
        match next_frame(buf, max) {
            Ok(Some((body, _))) => return Ok(LEN_PREFIX..LEN_PREFIX + body.len()),
            Ok(None) => {}
            Err(e) => return Err(ReadFrameError::Frame(e)),
        }
        match r.read(&mut chunk).await {
            Ok(0) => return Err(ReadFrameError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ReadFrameError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(bytes: &[u8]) -> &[u8] {
        match next_frame(bytes, usize::MAX) {
            Ok(Some((b, used))) => {
                assert_eq!(used, bytes.len());
                b
            }
            other => panic!("not one frame: {other:?}"),
        }
    }

    #[test]
    fn a_long_error_text_is_cut_on_a_character_boundary() {
        let text = format!("{}é and more", "a".repeat(1023));
        let mut out = Vec::new();
        Reply::Error {
            code: ErrorCode::Internal,
            message: &text,
        }
        .encode(&mut out);
        match Reply::decode(body(&out)) {
            Ok(Reply::Error { message, .. }) => assert_eq!(message, "a".repeat(1023)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Hello {
                session: 7,
                last_zxid: 1 << 33,
                prev: None,
                token: b"secret",
            },
            Request::Hello {
                session: 8,
                last_zxid: 3,
                prev: Some(Binding {
                    node: 2,
                    lane: 1,
                    session: 70_000,
                    generation: 1 << 35,
                }),
                token: b"",
            },
            Request::Get { key: b"k1" },
            Request::SyncGet { key: b"" },
            Request::Put {
                key: b"key",
                value: &[9; 300],
            },
            Request::Delete { key: b"gone" },
        ];
        for r in reqs {
            let mut out = Vec::new();
            r.encode(&mut out);
            assert_eq!(Request::decode(body(&out)), Ok((r, VERSION)));
        }
    }

    #[test]
    fn a_hello_with_a_bad_binding_flag_or_another_version_is_told_apart() {
        let mut out = Vec::new();
        Request::Hello {
            session: 1,
            last_zxid: 2,
            prev: None,
            token: b"t",
        }
        .encode(&mut out);
        // Frame prefix 4, tag 1, magic 4, version 1, session 8, zxid 8.
        let flag = 4 + 1 + 4 + 1 + 8 + 8;
        out[flag] = 2;
        assert_eq!(Request::decode(body(&out)), Err(DecodeError::BadFlag(2)));
        out[flag] = 0;
        out[4 + 1 + 4] = 1;
        assert!(matches!(
            Request::decode(body(&out)),
            Ok((Request::Hello { .. }, 1))
        ));
    }

    #[test]
    fn replies_round_trip() {
        let reps = [
            Reply::Welcome {
                session: 1,
                zxid: 2,
                node: 3,
                max_key: 64,
                max_value: 1024,
                max_inflight: 128,
                binding: Binding {
                    node: 3,
                    lane: 0,
                    session: 5,
                    generation: 9,
                },
            },
            Reply::Value {
                zxid: 5,
                version: 4,
                value: b"v",
            },
            Reply::NotFound { zxid: 9 },
            Reply::Written {
                zxid: 10,
                outcome: WriteOutcome::Absent,
            },
            Reply::Error {
                code: ErrorCode::KeyTooLong,
                message: "key of 99 bytes exceeds 64",
            },
        ];
        for r in reps {
            let mut out = Vec::new();
            r.encode(&mut out);
            assert_eq!(Reply::decode(body(&out)), Ok(r));
        }
    }

    #[test]
    fn frames_are_bounded_by_their_prefix() {
        let mut out = Vec::new();
        Request::Get { key: b"abc" }.encode(&mut out);
        assert_eq!(next_frame(&out[..3], 100), Ok(None));
        assert_eq!(next_frame(&out[..out.len() - 1], 100), Ok(None));
        assert!(matches!(next_frame(&out, 100), Ok(Some(_))));
        assert_eq!(
            next_frame(&[0xff, 0xff, 0xff, 0x7f], 1 << 20),
            Err(DecodeError::TooLarge {
                len: 0x7fff_ffff,
                max: 1 << 20
            })
        );
    }

    #[test]
    fn bad_magic_tag_and_trailing_bytes_are_errors() {
        assert_eq!(
            Request::decode(&[0x01, b'X', b'Z', b'B', b'1']),
            Err(DecodeError::BadMagic)
        );
        assert_eq!(Request::decode(&[0x7e]), Err(DecodeError::BadTag(0x7e)));
        assert_eq!(
            Request::decode(&[T_GET, 1, 0, b'a', 0]),
            Err(DecodeError::Trailing(1))
        );
        assert_eq!(Request::decode(&[]), Err(DecodeError::Truncated));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&bytes);
            let _ = Reply::decode(&bytes);
            let _ = next_frame(&bytes, 32);
        }

        #[test]
        fn truncated_requests_are_errors(key in proptest::collection::vec(any::<u8>(), 0..40),
                                         value in proptest::collection::vec(any::<u8>(), 0..40),
                                         cut in 1usize..80) {
            let mut out = Vec::new();
            Request::Put { key: &key, value: &value }.encode(&mut out);
            let b = &out[LEN_PREFIX..];
            let cut = cut.min(b.len());
            prop_assert!(Request::decode(&b[..b.len() - cut]).is_err());
        }
    }
}
