//! The link operations teamvirt does on the host, over route netlink (no
//! `ip`).
//!
//! A small synchronous client (`nl/sock.rs`): each thread has one blocking
//! `NETLINK_ROUTE` socket, opened on its first call and reused by the rest
//! of the command, so it is in that thread's network namespace (tests run
//! in a namespace of their own); no async runtime is involved. Callers are
//! both plain (start) and async (migration destination, from
//! `spawn_blocking`). Messages are built and parsed with
//! `netlink-packet-route`.

use std::io;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoMacVtap, InfoPortData, InfoPortKind, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, MacVtapMode,
};
use netlink_packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

mod sock;

use sock::NlError;

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

/// `RTM_GETLINK` for one link (by the header's index or an `IFLA_IFNAME`).
fn get_link(m: LinkMessage) -> Result<Option<LinkMessage>, NlError> {
    let replies = sock::call(RouteNetlinkMessage::GetLink(m), 0)?;
    Ok(replies.into_iter().find_map(|r| match r {
        RouteNetlinkMessage::NewLink(l) => Some(l),
        _ => None,
    }))
}

fn link_named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    m
}

fn link_indexed(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

/// A link that is not there is `None`.
fn found(r: Result<Option<LinkMessage>, NlError>) -> io::Result<Option<LinkMessage>> {
    match r {
        Ok(m) => Ok(m),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Change a link (`RTM_NEWLINK` on an existing index).
fn change_link(m: LinkMessage) -> io::Result<()> {
    sock::call(RouteNetlinkMessage::NewLink(m), 0)?;
    Ok(())
}

/// A bridge-port setting of link `index` (`type bridge_slave ...`).
fn bridge_port(index: u32, setting: InfoBridgePort) -> LinkMessage {
    let mut m = link_indexed(index);
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![setting])),
    ]));
    m
}

/// The link called `name`, if any.
pub fn link_by_name(name: &str) -> io::Result<Option<Link>> {
    Ok(found(get_link(link_named(name)))?.as_ref().map(link_of))
}

/// The link with index `index`, if any.
pub fn link_by_index(index: u32) -> io::Result<Option<Link>> {
    Ok(found(get_link(link_indexed(index)))?.as_ref().map(link_of))
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
    let mut m = link_indexed(index);
    if let Some(a) = mac {
        m.attributes.push(LinkAttribute::Address(a.to_vec()));
    }
    if let Some(v) = mtu {
        m.attributes.push(LinkAttribute::Mtu(v));
    }
    if let Some(c) = master {
        m.attributes.push(LinkAttribute::Controller(c));
    }
    if up {
        m.header.flags |= LinkFlags::Up;
        m.header.change_mask |= LinkFlags::Up;
    }
    change_link(m)
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
    let mut m = link_named(name);
    m.attributes.push(LinkAttribute::Link(parent));
    if let Some(a) = mac {
        m.attributes.push(LinkAttribute::Address(a.to_vec()));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVtap),
        LinkInfo::Data(InfoData::MacVtap(vec![InfoMacVtap::Mode(mode)])),
    ]));
    sock::call(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)?;
    get_link(link_named(name))?
        .map(|m| m.header.index)
        .ok_or_else(|| io::Error::other("the new macvtap is not listed"))
}

/// Delete a link (gone already is fine).
pub fn del_link(index: u32) -> io::Result<()> {
    match sock::call(RouteNetlinkMessage::DelLink(link_indexed(index)), 0) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The bridge's forwarding-database entry for `mac` on `port`.
fn fdb_entry(port: u32, mac: [u8; 6]) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = port;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m
}

/// Forget where the bridge learnt `mac` (its forwarding-database entry on
/// port `port`), so frames for it are flooded until the guest is heard
/// from again. No entry is fine.
pub fn fdb_del(port: u32, mac: [u8; 6]) -> io::Result<()> {
    match sock::call(RouteNetlinkMessage::DelNeighbour(fdb_entry(port, mac)), 0) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The bridge ports the forwarding database has *learnt* `mac` on
/// (entries a user or teamvirt added, and ports' own entries, are left
/// out).
pub fn fdb_ports(mac: [u8; 6]) -> io::Result<Vec<u32>> {
    let mut q = NeighbourMessage::default();
    q.header.family = AddressFamily::Bridge;
    let mut out = Vec::new();
    for r in sock::dump(RouteNetlinkMessage::GetNeighbour(q))? {
        let RouteNetlinkMessage::NewNeighbour(m) = r else {
            continue;
        };
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
}

/// Turn address learning on a bridge port on or off (`ip link set NAME
/// type bridge_slave learning on|off`).
pub fn set_port_learning(index: u32, on: bool) -> io::Result<()> {
    change_link(bridge_port(index, InfoBridgePort::Learning(on)))
}

/// Point the bridge's entry for `mac` at port `port`: `bridge fdb replace
/// MAC dev PORT master static sticky`. Static: never ages out; sticky:
/// a frame from `mac` arriving on another port does not move it; replace:
/// an entry on another port moves in one step.
pub fn fdb_pin(port: u32, mac: [u8; 6]) -> io::Result<()> {
    let mut m = fdb_entry(port, mac);
    m.header.state = NeighbourState::Noarp;
    m.header.kind = RouteType::Unspec;
    m.header.flags = NeighbourFlags::Controller | NeighbourFlags::Sticky;
    sock::call(
        RouteNetlinkMessage::NewNeighbour(m),
        NLM_F_REPLACE | NLM_F_CREATE,
    )?;
    Ok(())
}

/// Lock or unlock a bridge port (`ip link set NAME type bridge_slave
/// locked on|off`): a locked port forwards only frames whose source MAC
/// has a forwarding entry pointing at it.
pub fn set_port_locked(index: u32, on: bool) -> io::Result<()> {
    change_link(bridge_port(index, InfoBridgePort::Locked(on)))
}

/// Packets a link has received (IFLA_STATS64; for a tap: what the guest
/// sent through it).
pub fn rx_packets(index: u32) -> io::Result<Option<u64>> {
    Ok(found(get_link(link_indexed(index)))?.and_then(|m| {
        m.attributes.iter().find_map(|a| match a {
            LinkAttribute::Stats64(st) => Some(st.rx_packets),
            _ => None,
        })
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_s_calls_share_one_socket() {
        // A fresh thread: its count starts at zero.
        std::thread::spawn(|| {
            assert_eq!(sock::opened_on_this_thread(), 0);
            let lo = link_by_name("lo").unwrap().expect("every namespace has lo");
            let again = link_by_index(lo.index).unwrap().map(|l| l.name);
            assert_eq!(again.as_deref(), Some("lo"));
            // The kernel's refusal (ENODEV) leaves the socket usable.
            assert_eq!(link_by_name("tv-no-such-link").unwrap(), None);
            assert!(rx_packets(lo.index).unwrap().is_some());
            assert_eq!(sock::opened_on_this_thread(), 1);
        })
        .join()
        .unwrap();
    }
}
