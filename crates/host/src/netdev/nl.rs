//! The link operations teamvirt does on the host, over rtnetlink (no `ip`).
//!
//! Each call opens its netlink socket on the calling thread, so the socket
//! is in that thread's network namespace (tests run in a namespace of
//! their own), and runs on the process's one runtime ([`crate::asyncrt`]).
//! Callers are both plain (start) and async (migration destination, from
//! `spawn_blocking`); from inside the runtime, a scoped thread (which
//! inherits the namespace) does the blocking wait.

use std::future::Future;
use std::io;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage, MacVtapMode};
use rtnetlink::packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkMacVtap, LinkUnspec};

/// What teamvirt needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: Option<u32>,
    /// `bridge`, `macvtap`, `tun`, `openvswitch`... (IFLA_INFO_KIND).
    pub kind: Option<String>,
    /// The bridge it is a port of.
    pub master: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Run `f` with a fresh netlink handle on the process's runtime.
fn run<T, F, Fut>(f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = io::Result<T>>,
{
    let rt = crate::asyncrt::handle().map_err(io::Error::other)?;
    let call = move || {
        let (conn, handle, _) = {
            // The socket registers with the runtime's reactor.
            let _in = rt.enter();
            rtnetlink::new_connection()?
        };
        // The connection is driven here, with the work, not as a task:
        // a call never waits for a runtime worker to be free.
        rt.block_on(async move {
            tokio::select! {
                out = f(handle) => out,
                () = conn => Err(io::Error::other("netlink connection ended")),
            }
        })
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return call();
    }
    std::thread::scope(|s| {
        s.spawn(call)
            .join()
            .map_err(|_| io::Error::other("netlink thread panicked"))?
    })
}

fn link_of(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        mtu: None,
        kind: None,
        master: None,
        mac: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::Controller(c) => l.master = Some(*c),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                l.mac = Some(mac);
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// The link called `name`, if any.
pub fn link_by_name(name: &str) -> io::Result<Option<Link>> {
    let name = name.to_owned();
    run(move |h| async move {
        let mut s = h.link().get().match_name(name).execute();
        match s.try_next().await {
            Ok(m) => Ok(m.as_ref().map(link_of)),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    })
}

/// The link with index `index`, if any.
pub fn link_by_index(index: u32) -> io::Result<Option<Link>> {
    run(move |h| async move {
        let mut s = h.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(m) => Ok(m.as_ref().map(link_of)),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    })
}

/// Set what libvirt sets on a tap or macvtap it created: MAC, MTU, the
/// bridge it is a port of, and up.
pub fn configure(
    index: u32,
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
    master: Option<u32>,
    up: bool,
) -> io::Result<()> {
    run(move |h| async move {
        let mut b = LinkUnspec::new_with_index(index);
        if let Some(m) = mac {
            b = b.address(m.to_vec());
        }
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        if let Some(c) = master {
            b = b.controller(c);
        }
        if up {
            b = b.up();
        }
        h.link().change(b.build()).execute().await.map_err(to_io)
    })
}

/// Create a macvtap on `parent` (mode bridge/vepa/private/passthrough)
/// with the guest's MAC. Returns its index.
pub fn add_macvtap(name: &str, parent: u32, mode: &str, mac: Option<[u8; 6]>) -> io::Result<u32> {
    let mode = match mode {
        "vepa" => MacVtapMode::Vepa,
        "private" => MacVtapMode::Private,
        "passthrough" => MacVtapMode::Passthrough,
        _ => MacVtapMode::Bridge,
    };
    let name = name.to_owned();
    run(move |h| async move {
        let mut b = LinkMacVtap::new(&name, parent, mode);
        if let Some(m) = mac {
            b = b.address(m.to_vec());
        }
        h.link().add(b.build()).execute().await.map_err(to_io)?;
        let mut s = h.link().get().match_name(name).execute();
        let m = s.try_next().await.map_err(to_io)?;
        m.map(|m| m.header.index)
            .ok_or_else(|| io::Error::other("the new macvtap is not listed"))
    })
}

/// Delete a link (gone already is fine).
pub fn del_link(index: u32) -> io::Result<()> {
    run(move |h| async move {
        match h.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    })
}

/// Forget where the bridge learnt `mac` (its forwarding-database entry on
/// port `port`), so frames for it are flooded until the guest is heard
/// from again. No entry is fine.
pub fn fdb_del(port: u32, mac: [u8; 6]) -> io::Result<()> {
    run(move |h| async move {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = port;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        match h.neighbours().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    })
}

/// The bridge ports the forwarding database has *learnt* `mac` on
/// (entries a user or teamvirt added, and ports' own entries, are left
/// out).
pub fn fdb_ports(mac: [u8; 6]) -> io::Result<Vec<u32>> {
    run(move |h| async move {
        let mut s = h
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(to_io)? {
            let hit = m
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l[..] == mac[..]));
            let added = matches!(
                m.header.state,
                NeighbourState::Noarp | NeighbourState::Permanent
            ) || m.header.flags.contains(NeighbourFlags::Own);
            if hit && !added {
                out.push(m.header.ifindex);
            }
        }
        Ok(out)
    })
}

/// Turn address learning on a bridge port on or off (`ip link set NAME
/// type bridge_slave learning on|off`).
pub fn set_port_learning(index: u32, on: bool) -> io::Result<()> {
    run(move |h| async move {
        let m = rtnetlink::LinkBridgePort::new(index).learning(on).build();
        h.link().change(m).execute().await.map_err(to_io)
    })
}

/// Point the bridge's entry for `mac` at port `port`: `bridge fdb replace
/// MAC dev PORT master static sticky`. Static: never ages out; sticky:
/// a frame from `mac` arriving on another port does not move it; replace:
/// an entry on another port moves in one step.
pub fn fdb_pin(port: u32, mac: [u8; 6]) -> io::Result<()> {
    run(move |h| async move {
        h.neighbours()
            .add_bridge(port, &mac)
            .state(NeighbourState::Noarp)
            .flags(NeighbourFlags::Controller | NeighbourFlags::Sticky)
            .replace()
            .execute()
            .await
            .map_err(to_io)
    })
}

/// Lock or unlock a bridge port (`ip link set NAME type bridge_slave
/// locked on|off`): a locked port forwards only frames whose source MAC
/// has a forwarding entry pointing at it.
pub fn set_port_locked(index: u32, on: bool) -> io::Result<()> {
    run(move |h| async move {
        let m = rtnetlink::LinkBridgePort::new(index).locked(on).build();
        h.link().change(m).execute().await.map_err(to_io)
    })
}

/// Packets a link has received (IFLA_STATS64; for a tap: what the guest
/// sent through it).
pub fn rx_packets(index: u32) -> io::Result<Option<u64>> {
    run(move |h| async move {
        let mut s = h.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Stats64(st) => Some(st.rx_packets),
                _ => None,
            })),
            Ok(None) => Ok(None),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    })
}

/// `52:54:00:..` as bytes (`None` unless six hex octets).
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (b, p) in out.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}
