//! A blocking `NETLINK_ROUTE` client: one socket per thread, opened on
//! that thread's first request and reused by its later ones.
//!
//! A netlink socket acts in the network namespace it was opened in, and a
//! thread's first request opens it on that thread, so it is the thread's
//! namespace. That stays right for the thread's life because teamvirt
//! never moves a thread to another namespace: no library code calls
//! `setns`/`unshare`; a run in a namespace (`ip netns exec`) is the whole
//! process from its start; the tests that call `setns` do it first thing
//! on a thread they spawn for the purpose (`pair_wiring.rs`), or on a
//! thread that sends no netlink requests (testinfra's capture).
//!
//! Each request carries the socket's next sequence number; replies with
//! another one (left over from a request that failed half-way) are
//! skipped. A socket that hit an I/O or protocol error is dropped, and the
//! thread's next request opens a fresh one.

use std::cell::{Cell, RefCell};
use std::io;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The kernel fills dump datagrams up to about 32 KiB; a bigger datagram
/// grows the buffer, up to [`MAX_DATAGRAM`].
const START_BUF: usize = 32 * 1024;
/// No route-netlink reply teamvirt asks for comes near this.
const MAX_DATAGRAM: usize = 1 << 20;

/// A request's failure: the kernel's answer (`NLMSG_ERROR`, kept as its
/// raw negative errno) or the socket's.
#[derive(Debug)]
pub(super) enum NlError {
    Kernel(i32),
    Io(io::Error),
}

impl NlError {
    /// The errno the kernel refused the request with.
    pub(super) fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel(code) => Some(-code),
            NlError::Io(_) => None,
        }
    }
}

impl From<NlError> for io::Error {
    fn from(e: NlError) -> Self {
        match e {
            NlError::Kernel(code) => io::Error::from_raw_os_error(code.abs()),
            NlError::Io(e) => e,
        }
    }
}

impl From<io::Error> for NlError {
    fn from(e: io::Error) -> Self {
        NlError::Io(e)
    }
}

struct Conn {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

thread_local! {
    static CONN: RefCell<Option<Conn>> = const { RefCell::new(None) };
    /// Sockets this thread has opened (the reuse test counts them).
    static OPENED: Cell<usize> = const { Cell::new(0) };
}

/// How many netlink sockets the calling thread has opened.
#[cfg(test)]
pub(super) fn opened_on_this_thread() -> usize {
    OPENED.with(Cell::get)
}

/// Send `body` with `NLM_F_REQUEST | NLM_F_ACK | extra` and return the
/// replies that came before the acknowledgement (a get's answer).
pub(super) fn call(
    body: RouteNetlinkMessage,
    extra: u16,
) -> Result<Vec<RouteNetlinkMessage>, NlError> {
    with_conn(|c| c.exchange(body, NLM_F_REQUEST | NLM_F_ACK | extra, false))
}

/// Send `body` as a dump request and return every entry.
pub(super) fn dump(body: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NlError> {
    with_conn(|c| c.exchange(body, NLM_F_REQUEST | NLM_F_DUMP, true))
}

fn with_conn<T>(f: impl FnOnce(&mut Conn) -> Result<T, NlError>) -> Result<T, NlError> {
    CONN.with(|slot| {
        let mut slot = slot.borrow_mut();
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(Conn::open()?),
        };
        let out = f(conn);
        if matches!(out, Err(NlError::Io(_))) {
            // Its stream may be out of step; the next request starts afresh.
            *slot = None;
        }
        out
    })
}

impl Conn {
    fn open() -> io::Result<Conn> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        // Port 0: the kernel.
        sock.connect(&SocketAddr::new(0, 0))?;
        OPENED.with(|n| n.set(n.get() + 1));
        Ok(Conn {
            sock,
            seq: 0,
            buf: vec![0; START_BUF],
        })
    }

    fn exchange(
        &mut self,
        body: RouteNetlinkMessage,
        flags: u16,
        dump: bool,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = encode(body, flags, seq);
        let sent = self.sock.send(&req, 0)?;
        if sent != req.len() {
            return Err(io::Error::other("netlink request sent in part").into());
        }
        let mut out = Vec::new();
        loop {
            let n = self.recv()?;
            if take(&self.buf[..n], seq, dump, &mut out)? {
                return Ok(out);
            }
        }
    }

    /// Read one datagram into the buffer, growing it (bounded) to fit.
    fn recv(&mut self) -> io::Result<usize> {
        // MSG_TRUNC makes a peek report the datagram's full size.
        let size = self.recv_with(libc::MSG_PEEK | libc::MSG_TRUNC)?;
        if size > MAX_DATAGRAM {
            return Err(io::Error::other(format!(
                "netlink reply of {size} bytes is over the {MAX_DATAGRAM}-byte limit"
            )));
        }
        if size > self.buf.len() {
            self.buf.resize(size, 0);
        }
        self.recv_with(0)
    }

    fn recv_with(&mut self, flags: libc::c_int) -> io::Result<usize> {
        loop {
            let mut b: &mut [u8] = &mut self.buf[..];
            match self.sock.recv(&mut b, flags) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

fn encode(body: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut req = NetlinkMessage::from(body);
    req.header.flags = flags;
    req.header.sequence_number = seq;
    req.finalize();
    let mut out = vec![0; req.buffer_len()];
    req.serialize(&mut out);
    out
}

/// Add the replies to request `seq` in one datagram to `out`; true once
/// the request is answered in full (its ACK or error, or a dump's
/// `NLMSG_DONE`).
fn take(
    datagram: &[u8],
    seq: u32,
    dump: bool,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Result<bool, NlError> {
    let mut off = 0;
    while off < datagram.len() {
        let rest = &datagram[off..];
        let nb = NetlinkBuffer::new_checked(rest)
            .map_err(|e| io::Error::other(format!("netlink reply: {e}")))?;
        let len = nb.length() as usize;
        let raw = &rest[..len];
        // NLMSG_ALIGN: messages start on 4-byte boundaries.
        off += (len + 3) & !3;
        if nb.sequence_number() != seq {
            continue;
        }
        let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) {
            Ok(m) => m,
            // One dump entry this crate cannot read does not hide the
            // others (as rtnetlink did).
            Err(e) if dump => {
                tracing::warn!("skipping a netlink dump entry: {e}");
                continue;
            }
            Err(e) => return Err(io::Error::other(format!("netlink reply: {e}")).into()),
        };
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => out.push(m),
            NetlinkPayload::Error(e) => {
                return match e.code {
                    None => Ok(true),
                    Some(c) => Err(NlError::Kernel(c.get())),
                };
            }
            NetlinkPayload::Done(d) if d.code < 0 => return Err(NlError::Kernel(d.code)),
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Overrun(_) => {
                return Err(io::Error::other("netlink reply overrun").into());
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage, NetlinkHeader, NLM_F_MULTIPART};
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use std::num::NonZeroI32;

    fn wire(payload: NetlinkPayload<RouteNetlinkMessage>, seq: u32, flags: u16) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        header.flags = flags;
        let mut m = NetlinkMessage::new(header, payload);
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        // Each message padded to 4 bytes, as the kernel does.
        b.resize((b.len() + 3) & !3, 0);
        b
    }

    fn link(index: u32, name: &str) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l))
    }

    fn error(code: i32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(code);
        NetlinkPayload::Error(e)
    }

    fn done() -> NetlinkPayload<RouteNetlinkMessage> {
        NetlinkPayload::Done(DoneMessage::default())
    }

    fn names(out: &[RouteNetlinkMessage]) -> Vec<String> {
        out.iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_error_reply_is_its_errno() {
        let mut out = Vec::new();
        let e = take(&wire(error(-libc::ENOENT), 7, 0), 7, false, &mut out).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert_eq!(io.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(
            io.to_string(),
            io::Error::from_raw_os_error(libc::ENOENT).to_string()
        );
    }

    #[test]
    fn an_ack_ends_a_request_with_its_replies() {
        let mut d = wire(link(3, "a"), 4, 0);
        d.extend(wire(error(0), 4, 0));
        let mut out = Vec::new();
        assert!(take(&d, 4, false, &mut out).unwrap());
        assert_eq!(names(&out), ["a"]);
    }

    #[test]
    fn a_dump_is_assembled_across_datagrams() {
        let mut first = wire(link(1, "lo"), 9, NLM_F_MULTIPART);
        first.extend(wire(link(2, "eth0"), 9, NLM_F_MULTIPART));
        let second = [
            wire(link(3, "br0"), 9, NLM_F_MULTIPART),
            wire(done(), 9, NLM_F_MULTIPART),
        ]
        .concat();
        let mut out = Vec::new();
        assert!(!take(&first, 9, true, &mut out).unwrap());
        assert!(take(&second, 9, true, &mut out).unwrap());
        assert_eq!(names(&out), ["lo", "eth0", "br0"]);
    }

    #[test]
    fn replies_to_another_request_are_skipped() {
        // An earlier request's leftovers (its entry, its error, its end).
        let mut d = wire(link(1, "stale"), 5, NLM_F_MULTIPART);
        d.extend(wire(error(-libc::EEXIST), 5, 0));
        d.extend(wire(done(), 5, NLM_F_MULTIPART));
        let mut out = Vec::new();
        assert!(!take(&d, 6, true, &mut out).unwrap());
        assert!(out.is_empty());
        let d = [wire(link(2, "fresh"), 6, 0), wire(error(0), 6, 0)].concat();
        assert!(take(&d, 6, false, &mut out).unwrap());
        assert_eq!(names(&out), ["fresh"]);
    }

    #[test]
    fn a_dump_that_failed_says_why() {
        let mut d = DoneMessage::default();
        d.code = -libc::EINVAL;
        let mut out = Vec::new();
        let e = take(&wire(NetlinkPayload::Done(d), 2, 0), 2, true, &mut out).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL));
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        let d = wire(link(1, "lo"), 1, 0);
        let mut out = Vec::new();
        let e = take(&d[..d.len() - 8], 1, false, &mut out).unwrap_err();
        assert!(matches!(e, NlError::Io(_)));
    }

    #[test]
    fn a_request_is_encoded_with_its_flags_and_sequence() {
        let b = encode(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_ACK,
            42,
        );
        let nb = NetlinkBuffer::new_checked(&b[..]).unwrap();
        assert_eq!(nb.length() as usize, b.len());
        assert_eq!(nb.sequence_number(), 42);
        assert_eq!(nb.flags(), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(nb.message_type(), libc::RTM_GETLINK);
    }
}
