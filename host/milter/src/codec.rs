//! The milter wire protocol (version 6), written from the protocol's description: every
//! packet is a 4-byte big-endian length (of what follows), one command byte, and the
//! command's data. Strings are NUL-terminated; numbers are big-endian `u32` (a port `u16`).
//!
//! Written here rather than taken from a crate: the milter crates found are bindings to
//! libmilter or GPL-3.0 servers (Sluice is Apache-2.0), and the protocol is small enough to
//! keep in one module that never panics on what an MTA (or anything else on the socket)
//! sends: every length is checked, every malformed packet is a [`ProtocolError`].

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The protocol version spoken (Sendmail 8.14+, Postfix 2.6+).
pub const PROTOCOL_VERSION: u32 = 6;

/// The largest packet read by default. MTAs send body chunks of at most 64 KiB (or 256 KiB /
/// 1 MiB when a milter negotiates it, which Sluice does not), so 1 MiB leaves room for a
/// long header or a large macro set while bounding what one connection can make us hold.
pub const DEFAULT_MAX_PACKET: usize = 1024 * 1024;

/// The largest `SMFIR_REPLBODY` chunk: the MTA's own chunk limit (65535 bytes of data).
pub const MAX_BODY_CHUNK: usize = 65535;

/// Modification actions a milter may ask for (`SMFIF_*`), negotiated in `SMFIC_OPTNEG`.
pub mod actions {
    /// Add headers.
    pub const ADD_HEADERS: u32 = 0x01;
    /// Replace the body.
    pub const CHANGE_BODY: u32 = 0x02;
    /// Add recipients.
    pub const ADD_RCPT: u32 = 0x04;
    /// Delete recipients.
    pub const DELETE_RCPT: u32 = 0x08;
    /// Change or delete headers.
    pub const CHANGE_HEADERS: u32 = 0x10;
    /// Quarantine (not used by Sluice).
    pub const QUARANTINE: u32 = 0x20;
    /// Change the envelope sender.
    pub const CHANGE_FROM: u32 = 0x40;
}

/// Protocol steps a milter may switch off (`SMFIP_*`), negotiated in `SMFIC_OPTNEG`.
pub mod steps {
    /// No `SMFIC_HELO`.
    pub const NO_HELO: u32 = 0x02;
    /// No `SMFIC_UNKNOWN`.
    pub const NO_UNKNOWN: u32 = 0x100;
    /// No `SMFIC_DATA`.
    pub const NO_DATA: u32 = 0x200;
}

/// Why a connection's input cannot be read as milter packets. Each ends that connection
/// (the MTA applies its `milter_default_action` to the message), never the process.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A packet claims more bytes than the limit.
    #[error("packet of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The length it claims.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A packet of length 0 (no command byte).
    #[error("empty packet (length 0, no command)")]
    Empty,
    /// The connection ended inside a packet.
    #[error("the connection ended inside a packet")]
    Truncated,
    /// A command byte this protocol does not have.
    #[error("unknown command byte 0x{0:02x}")]
    UnknownCommand(u8),
    /// A known command whose data does not have its shape.
    #[error("malformed {command} packet: {reason}")]
    Malformed {
        /// The command's name (`SMFIC_*`).
        command: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading or writing the socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// The MTA's address family in `SMFIC_CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAddress {
    /// Unknown (`U`): no port or address follow.
    Unknown,
    /// IPv4 (`4`), IPv6 (`6`) or a Unix socket (`L`), with the port and the address text.
    Known {
        /// `4`, `6` or `L`.
        family: char,
        /// The client's port (0 for a Unix socket).
        port: u16,
        /// The address as text.
        address: String,
    },
}

/// One command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SMFIC_OPTNEG`: the MTA's version, the actions it allows and the steps it can skip.
    OptNeg {
        /// Protocol version.
        version: u32,
        /// `SMFIF_*` bits offered.
        actions: u32,
        /// `SMFIP_*` bits offered.
        protocol: u32,
    },
    /// `SMFIC_MACRO`: macros for the command `stage` that follows (no reply).
    Macro {
        /// The command byte they belong to.
        stage: u8,
        /// Name/value pairs.
        macros: Vec<(String, String)>,
    },
    /// `SMFIC_CONNECT`: the SMTP client's host name and address.
    Connect {
        /// Host name (or `[address]`).
        hostname: String,
        /// Address.
        address: ClientAddress,
    },
    /// `SMFIC_HELO`: the HELO/EHLO argument.
    Helo(String),
    /// `SMFIC_MAIL`: MAIL FROM's address (with angle brackets) and ESMTP arguments.
    Mail(Vec<String>),
    /// `SMFIC_RCPT`: RCPT TO's address (with angle brackets) and ESMTP arguments.
    Rcpt(Vec<String>),
    /// `SMFIC_DATA`.
    Data,
    /// `SMFIC_HEADER`: one header field, name and value as the MTA has them.
    Header {
        /// Field name.
        name: String,
        /// Field value (folded lines kept, bytes as received).
        value: Vec<u8>,
    },
    /// `SMFIC_EOH`: end of headers.
    EndOfHeaders,
    /// `SMFIC_BODY`: a body chunk.
    Body(Vec<u8>),
    /// `SMFIC_BODYEOB`: end of message (possibly with a last chunk).
    EndOfMessage(Vec<u8>),
    /// `SMFIC_ABORT`: forget the current message; the connection stays (no reply).
    Abort,
    /// `SMFIC_QUIT`: close the connection.
    Quit,
    /// `SMFIC_QUIT_NC`: the SMTP session ended, a new one follows on this connection.
    QuitNewConnection,
    /// `SMFIC_UNKNOWN`: an SMTP command the MTA did not recognise.
    Unknown(Vec<u8>),
}

impl Command {
    /// Decodes one packet's command byte and data.
    pub fn decode(code: u8, data: &[u8]) -> Result<Command, ProtocolError> {
        Ok(match code {
            b'O' => {
                let bad = ProtocolError::Malformed {
                    command: "SMFIC_OPTNEG",
                    reason: "shorter than 12 bytes",
                };
                let word = |i: usize| {
                    data.get(i * 4..i * 4 + 4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                };
                match (word(0), word(1), word(2)) {
                    (Some(version), Some(actions), Some(protocol)) => Command::OptNeg {
                        version,
                        actions,
                        protocol,
                    },
                    _ => return Err(bad),
                }
            }
            b'D' => {
                let (&stage, rest) = data.split_first().ok_or(ProtocolError::Malformed {
                    command: "SMFIC_MACRO",
                    reason: "no stage byte",
                })?;
                let strings = strings(rest, "SMFIC_MACRO")?;
                if strings.len() % 2 != 0 {
                    return Err(ProtocolError::Malformed {
                        command: "SMFIC_MACRO",
                        reason: "a macro name without a value",
                    });
                }
                let macros = strings
                    .chunks(2)
                    .map(|p| (text(p[0]), text(p[1])))
                    .collect();
                Command::Macro { stage, macros }
            }
            b'C' => decode_connect(data)?,
            b'H' => Command::Helo(text(one_string(data, "SMFIC_HELO")?)),
            b'M' => Command::Mail(args(data, "SMFIC_MAIL")?),
            b'R' => Command::Rcpt(args(data, "SMFIC_RCPT")?),
            b'T' => Command::Data,
            b'L' => {
                let parts = strings(data, "SMFIC_HEADER")?;
                let [name, value] = parts[..] else {
                    return Err(ProtocolError::Malformed {
                        command: "SMFIC_HEADER",
                        reason: "not a name and a value",
                    });
                };
                Command::Header {
                    name: text(name),
                    value: value.to_vec(),
                }
            }
            b'N' => Command::EndOfHeaders,
            b'B' => Command::Body(data.to_vec()),
            b'E' => Command::EndOfMessage(data.to_vec()),
            b'A' => Command::Abort,
            b'Q' => Command::Quit,
            b'K' => Command::QuitNewConnection,
            b'U' => Command::Unknown(data.strip_suffix(b"\0").unwrap_or(data).to_vec()),
            other => return Err(ProtocolError::UnknownCommand(other)),
        })
    }

    /// Whether the MTA waits for an answer to this command.
    pub fn wants_reply(&self) -> bool {
        !matches!(
            self,
            Command::Macro { .. } | Command::Abort | Command::Quit | Command::QuitNewConnection
        )
    }
}

fn decode_connect(data: &[u8]) -> Result<Command, ProtocolError> {
    let malformed = |reason| ProtocolError::Malformed {
        command: "SMFIC_CONNECT",
        reason,
    };
    let nul = data
        .iter()
        .position(|&b| b == 0)
        .ok_or(malformed("host name not NUL-terminated"))?;
    let hostname = text(&data[..nul]);
    let rest = &data[nul + 1..];
    let (&family, rest) = rest.split_first().ok_or(malformed("no address family"))?;
    let address = match family {
        b'U' => ClientAddress::Unknown,
        b'4' | b'6' | b'L' => {
            let port = rest.get(..2).ok_or(malformed("no port"))?;
            let port = u16::from_be_bytes([port[0], port[1]]);
            ClientAddress::Known {
                family: family as char,
                port,
                address: text(one_string(&rest[2..], "SMFIC_CONNECT")?),
            }
        }
        _ => return Err(malformed("unknown address family")),
    };
    Ok(Command::Connect { hostname, address })
}

/// NUL-terminated strings, every one terminated.
fn strings<'a>(data: &'a [u8], command: &'static str) -> Result<Vec<&'a [u8]>, ProtocolError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let body = data.strip_suffix(b"\0").ok_or(ProtocolError::Malformed {
        command,
        reason: "a string is not NUL-terminated",
    })?;
    Ok(body.split(|&b| b == 0).collect())
}

fn one_string<'a>(data: &'a [u8], command: &'static str) -> Result<&'a [u8], ProtocolError> {
    match strings(data, command)?[..] {
        [one] => Ok(one),
        _ => Err(ProtocolError::Malformed {
            command,
            reason: "not exactly one string",
        }),
    }
}

fn args(data: &[u8], command: &'static str) -> Result<Vec<String>, ProtocolError> {
    let args: Vec<String> = strings(data, command)?.into_iter().map(text).collect();
    if args.is_empty() {
        return Err(ProtocolError::Malformed {
            command,
            reason: "no address",
        });
    }
    Ok(args)
}

/// Envelope strings and macro values are ASCII in practice; anything else is kept readable.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One answer or modification to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `SMFIC_OPTNEG`: the version, actions and steps this milter uses.
    OptNeg {
        /// Protocol version.
        version: u32,
        /// `SMFIF_*` bits wanted.
        actions: u32,
        /// `SMFIP_*` bits wanted.
        protocol: u32,
    },
    /// `SMFIR_CONTINUE`.
    Continue,
    /// `SMFIR_ACCEPT`: accept the message, no more commands for it.
    Accept,
    /// `SMFIR_DISCARD`: accept the message and throw it away.
    Discard,
    /// `SMFIR_REJECT`: the MTA's generic 5xx.
    Reject,
    /// `SMFIR_TEMPFAIL`: the MTA's generic 4xx.
    Tempfail,
    /// `SMFIR_REPLYCODE`: this SMTP reply (`550 5.7.1 text`).
    ReplyCode(String),
    /// `SMFIR_ADDHEADER`: append a header.
    AddHeader {
        /// Name.
        name: String,
        /// Value.
        value: Vec<u8>,
    },
    /// `SMFIR_CHGHEADER`: change the `index`-th (1-based) field of this name; an empty value
    /// deletes it.
    ChangeHeader {
        /// Occurrence of the name, from 1.
        index: u32,
        /// Name.
        name: String,
        /// New value (empty: delete).
        value: Vec<u8>,
    },
    /// `SMFIR_INSHEADER`: insert a header at position `index` (0: first).
    InsertHeader {
        /// Position among all header fields.
        index: u32,
        /// Name.
        name: String,
        /// Value.
        value: Vec<u8>,
    },
    /// `SMFIR_ADDRCPT`.
    AddRcpt(String),
    /// `SMFIR_DELRCPT` (the address as the MTA gave it).
    DelRcpt(String),
    /// `SMFIR_CHGFROM`.
    ChangeFrom(String),
    /// `SMFIR_REPLBODY`: the whole new body, sent as consecutive packets of at most
    /// [`MAX_BODY_CHUNK`] bytes each (one empty packet for an empty body). Held whole and
    /// framed while writing, so a large body is not copied into chunks first.
    ReplaceBody(Vec<u8>),
    /// `SMFIR_PROGRESS`: still working, reset the MTA's timeout.
    Progress,
}

impl Response {
    /// The packet (for [`Response::ReplaceBody`], the packets): length, command byte, data.
    pub fn encode(&self) -> Vec<u8> {
        let mut data = Vec::new();
        let code = match self {
            Response::OptNeg {
                version,
                actions,
                protocol,
            } => {
                for word in [version, actions, protocol] {
                    data.extend_from_slice(&word.to_be_bytes());
                }
                b'O'
            }
            Response::Continue => b'c',
            Response::Accept => b'a',
            Response::Discard => b'd',
            Response::Reject => b'r',
            Response::Tempfail => b't',
            Response::ReplyCode(reply) => {
                // One line: a CR or LF would end the SMTP reply early.
                let line: String = reply
                    .chars()
                    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                    .collect();
                push_str(&mut data, line.as_bytes());
                b'y'
            }
            Response::AddHeader { name, value } => {
                push_str(&mut data, name.as_bytes());
                push_str(&mut data, value);
                b'h'
            }
            Response::ChangeHeader { index, name, value } => {
                data.extend_from_slice(&index.to_be_bytes());
                push_str(&mut data, name.as_bytes());
                push_str(&mut data, value);
                b'm'
            }
            Response::InsertHeader { index, name, value } => {
                data.extend_from_slice(&index.to_be_bytes());
                push_str(&mut data, name.as_bytes());
                push_str(&mut data, value);
                b'i'
            }
            Response::AddRcpt(r) => {
                push_str(&mut data, r.as_bytes());
                b'+'
            }
            Response::DelRcpt(r) => {
                push_str(&mut data, r.as_bytes());
                b'-'
            }
            Response::ChangeFrom(f) => {
                push_str(&mut data, f.as_bytes());
                b'e'
            }
            Response::ReplaceBody(body) => {
                return body_frames(body)
                    .into_iter()
                    .flat_map(|(head, chunk)| head.into_iter().chain(chunk.iter().copied()))
                    .collect();
            }
            Response::Progress => b'p',
        };
        frame(code, &data)
    }
}

/// The `SMFIR_REPLBODY` packets of a body: each packet's 5-byte head and its chunk.
fn body_frames(body: &[u8]) -> Vec<([u8; 5], &[u8])> {
    let mut chunks: Vec<&[u8]> = body.chunks(MAX_BODY_CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(body);
    }
    chunks
        .into_iter()
        .map(|chunk| {
            let len = ((chunk.len() + 1) as u32).to_be_bytes();
            ([len[0], len[1], len[2], len[3], b'b'], chunk)
        })
        .collect()
}

/// A NUL-terminated string; a NUL inside would end it early on the MTA's side, so it goes.
fn push_str(data: &mut Vec<u8>, s: &[u8]) {
    data.extend(s.iter().copied().filter(|&b| b != 0));
    data.push(0);
}

/// A packet: 4-byte big-endian length of command + data, the command byte, the data.
pub fn frame(code: u8, data: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(5 + data.len());
    packet.extend_from_slice(&((data.len() + 1) as u32).to_be_bytes());
    packet.push(code);
    packet.extend_from_slice(data);
    packet
}

/// A packet split from memory: command byte, data, and the bytes after the packet.
pub type Split<'a> = (u8, &'a [u8], &'a [u8]);

/// The first packet in `buf`: its command byte, its data and the bytes after it; `Ok(None)`
/// when `buf` does not hold a whole packet yet. The same checks as [`read_packet`], for
/// input already in memory (the fuzz target).
pub fn split_packet(buf: &[u8], max: usize) -> Result<Option<Split<'_>>, ProtocolError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 {
        return Err(ProtocolError::Empty);
    }
    if len > max {
        return Err(ProtocolError::TooLarge { len, max });
    }
    let Some(packet) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    Ok(Some((packet[0], &packet[1..], &buf[4 + len..])))
}

/// Reads one packet: `Ok(None)` when the connection ends cleanly between packets.
pub async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<(u8, Vec<u8>)>, ProtocolError> {
    let mut len = [0u8; 4];
    match reader.read(&mut len[..1]).await? {
        0 => return Ok(None),
        _ => read_exact(reader, &mut len[1..]).await?,
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err(ProtocolError::Empty);
    }
    if len > max {
        return Err(ProtocolError::TooLarge { len, max });
    }
    let mut packet = vec![0u8; len];
    read_exact(reader, &mut packet).await?;
    let data = packet.split_off(1);
    Ok(Some((packet[0], data)))
}

async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), ProtocolError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProtocolError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Writes responses in as few writes as a bounded buffer allows (each write of a
/// request/response protocol can cost a delayed-ACK round trip); a new body is framed from
/// where it lies, at most 64 KiB of it copied at a time.
pub async fn write_responses<W: AsyncWrite + Unpin>(
    writer: &mut W,
    responses: &[Response],
) -> Result<(), ProtocolError> {
    const FLUSH_AT: usize = 64 * 1024;
    let mut pending: Vec<u8> = Vec::new();
    for response in responses {
        let Response::ReplaceBody(body) = response else {
            pending.extend(response.encode());
            continue;
        };
        for (head, chunk) in body_frames(body) {
            pending.extend_from_slice(&head);
            pending.extend_from_slice(chunk);
            if pending.len() >= FLUSH_AT {
                writer.write_all(&pending).await?;
                pending.clear();
            }
        }
    }
    writer.write_all(&pending).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn read_all(mut input: &[u8]) -> Vec<Result<Command, String>> {
        block_on(async {
            let mut out = Vec::new();
            loop {
                match read_packet(&mut input, 1024).await {
                    Ok(Some((code, data))) => {
                        out.push(Command::decode(code, &data).map_err(|e| e.to_string()))
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        break;
                    }
                }
            }
            out
        })
    }

    #[test]
    fn mta_commands_decode_from_their_packets() {
        let mut optneg = Vec::new();
        for w in [6u32, 0x1ff, 0x1f_ffff] {
            optneg.extend_from_slice(&w.to_be_bytes());
        }
        let input = [
            frame(b'O', &optneg),
            frame(b'D', b"Ci\0ABC123\0j\0mx.example.com\0"),
            frame(b'C', b"mail.sender.test\x004\x00\x19192.0.2.1\0"),
            frame(b'C', b"localhost\0U"),
            frame(b'H', b"mail.sender.test\0"),
            frame(b'M', b"<a@sender.test>\0SIZE=100\0"),
            frame(b'R', b"<b@example.com>\0"),
            frame(b'T', b""),
            frame(b'L', b"Subject\0 hello\r\n\tworld\0"),
            frame(b'N', b""),
            frame(b'B', b"body\r\n"),
            frame(b'E', b""),
            frame(b'A', b""),
            frame(b'U', b"XYZZY\0"),
            frame(b'K', b""),
            frame(b'Q', b""),
        ]
        .concat();
        let got: Vec<Command> = read_all(&input).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got[0],
            Command::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff
            }
        );
        assert_eq!(
            got[1],
            Command::Macro {
                stage: b'C',
                macros: vec![
                    ("i".into(), "ABC123".into()),
                    ("j".into(), "mx.example.com".into())
                ]
            }
        );
        assert_eq!(
            got[2],
            Command::Connect {
                hostname: "mail.sender.test".into(),
                address: ClientAddress::Known {
                    family: '4',
                    port: 25,
                    address: "192.0.2.1".into()
                }
            }
        );
        assert_eq!(
            got[3],
            Command::Connect {
                hostname: "localhost".into(),
                address: ClientAddress::Unknown
            }
        );
        assert_eq!(
            got[5],
            Command::Mail(vec!["<a@sender.test>".into(), "SIZE=100".into()])
        );
        assert_eq!(
            got[8],
            Command::Header {
                name: "Subject".into(),
                value: b" hello\r\n\tworld".to_vec()
            }
        );
        assert_eq!(got[10], Command::Body(b"body\r\n".to_vec()));
        assert_eq!(got[13], Command::Unknown(b"XYZZY".to_vec()));
        assert_eq!(got.len(), 16);
        assert!(!got[1].wants_reply() && !got[12].wants_reply() && got[9].wants_reply());
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (frame(b'O', b"\0\0\0\x06"), "SMFIC_OPTNEG"),
            (frame(b'D', b""), "no stage byte"),
            (frame(b'D', b"Ci\0"), "without a value"),
            (frame(b'C', b"host"), "NUL-terminated"),
            (frame(b'C', b"host\0"), "no address family"),
            (frame(b'C', b"host\x004\x00"), "no port"),
            (frame(b'C', b"host\0X"), "unknown address family"),
            (frame(b'L', b"Subject\0"), "not a name and a value"),
            (frame(b'M', b""), "no address"),
            (frame(b'R', b"<b@x>"), "NUL-terminated"),
            (frame(b'z', b""), "unknown command byte 0x7a"),
            (vec![0, 0, 0, 0], "length 0"),
            (vec![0, 0, 0x10, 0, b'B'], "over the 1024-byte limit"),
            (vec![0, 0, 0, 9, b'B', 1, 2], "ended inside a packet"),
            (vec![0, 0], "ended inside a packet"),
        ];
        for (input, expected) in cases {
            let got = read_all(&input);
            let err = got.last().unwrap().as_ref().unwrap_err();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
        // Arbitrary bytes: never a panic.
        let mut seed = 7u32;
        for _ in 0..2000 {
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let code = bytes.first().copied().unwrap_or(b'C');
            let _ = Command::decode(code, &bytes);
            let _ = read_all(&bytes);
        }
    }

    #[test]
    fn packets_split_from_memory_as_from_a_socket() {
        let two = [frame(b'T', b""), frame(b'H', b"x\0")].concat();
        let (code, data, rest) = split_packet(&two, 64).unwrap().unwrap();
        assert_eq!((code, data), (b'T', &b""[..]));
        assert_eq!(split_packet(rest, 64).unwrap().unwrap().0, b'H');
        assert!(split_packet(&rest[..5], 64).unwrap().is_none());
        assert!(split_packet(b"\0\0", 64).unwrap().is_none());
        assert!(matches!(
            split_packet(b"\0\0\0\0", 64),
            Err(ProtocolError::Empty)
        ));
        assert!(matches!(
            split_packet(b"\0\0\x01\0B", 64),
            Err(ProtocolError::TooLarge { len: 256, .. })
        ));
    }

    #[test]
    fn responses_encode_as_the_mta_reads_them() {
        assert_eq!(Response::Continue.encode(), b"\0\0\0\x01c");
        assert_eq!(
            Response::ReplyCode("550 5.7.1 no\r\nway".into()).encode(),
            frame(b'y', b"550 5.7.1 no  way\0")
        );
        assert_eq!(
            Response::ChangeHeader {
                index: 2,
                name: "Subject".into(),
                value: b"[EXT] hi".to_vec()
            }
            .encode(),
            frame(b'm', b"\0\0\0\x02Subject\0[EXT] hi\0")
        );
        assert_eq!(
            Response::InsertHeader {
                index: 0,
                name: "X-A".into(),
                value: b"1\x002".to_vec()
            }
            .encode(),
            frame(b'i', b"\0\0\0\0X-A\x0012\0")
        );
        assert_eq!(
            Response::DelRcpt("<b@example.com>".into()).encode(),
            frame(b'-', b"<b@example.com>\0")
        );
        let optneg = Response::OptNeg {
            version: 6,
            actions: 0x5f,
            protocol: 0,
        }
        .encode();
        assert_eq!(optneg.len(), 17);
        assert_eq!(&optneg[..5], b"\0\0\0\x0dO");
    }

    #[test]
    fn a_new_body_is_sent_in_chunks_of_at_most_65535_bytes() {
        let body = vec![b'x'; 2 * MAX_BODY_CHUNK + 10];
        let sizes = |bytes: &[u8]| {
            let mut rest = bytes;
            let mut sizes = Vec::new();
            while let Some((code, data, after)) = split_packet(rest, 1 << 20).unwrap() {
                assert_eq!(code, b'b');
                sizes.push(data.len());
                rest = after;
            }
            assert!(rest.is_empty());
            sizes
        };
        let encoded = Response::ReplaceBody(body.clone()).encode();
        assert_eq!(sizes(&encoded), [MAX_BODY_CHUNK, MAX_BODY_CHUNK, 10]);
        assert_eq!(sizes(&Response::ReplaceBody(Vec::new()).encode()), [0]);
        let mut written = Vec::new();
        block_on(write_responses(
            &mut written,
            &[Response::ReplaceBody(body), Response::Continue],
        ))
        .unwrap();
        assert_eq!(written, [encoded, Response::Continue.encode()].concat());
    }
}
