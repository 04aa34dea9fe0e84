//! Tap devices through /dev/net/tun (TUNSETIFF), vhost-net, and the
//! character device of a macvtap — the descriptors handed to QEMU.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Open (creating it unless it exists) the tap `template` (`vnet%d` lets
/// the kernel pick the number) once per queue, like libvirt's
/// virNetDevTapCreate: no packet info, a virtio-net header when the NIC
/// is virtio, multiqueue when more than one queue. The tap is not
/// persistent: it goes away with the last descriptor (QEMU's).
pub fn open_tap(template: &str, queues: u32, vnet_hdr: bool) -> io::Result<(String, Vec<OwnedFd>)> {
    if template.is_empty() || template.len() >= libc::IFNAMSIZ || template.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid tap device name '{template}'"),
        ));
    }
    let mut flags = IFF_TAP | IFF_NO_PI;
    if vnet_hdr {
        flags |= IFF_VNET_HDR;
    }
    if queues > 1 {
        flags |= IFF_MULTI_QUEUE;
    }
    let mut name = template.to_owned();
    let mut fds = Vec::new();
    for _ in 0..queues.max(1) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq
        // lays out (name, then the flags at the start of the union).
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // The first queue fixes the name (vnet%d resolved); the others
        // attach to it.
        let end = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(req.name.len());
        name = String::from_utf8_lossy(&req.name[..end]).into_owned();
        fds.push(OwnedFd::from(f));
    }
    Ok((name, fds))
}

/// One /dev/vhost-net descriptor per queue when the host has it usable
/// (libvirt: silently without when not asked for explicitly).
pub fn open_vhost(queues: u32) -> Option<Vec<OwnedFd>> {
    let mut out = Vec::new();
    for _ in 0..queues.max(1) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/vhost-net")
            .ok()?;
        out.push(OwnedFd::from(f));
    }
    Some(out)
}

/// The character device of macvtap `name` (ifindex `index`), opened once
/// per queue. Its node is /dev/tapINDEX where devtmpfs made it; inside a
/// network namespace the index may not match the node there, so the
/// device number is taken from sysfs and a private node is made in
/// `private_dir` when /dev has none for it.
pub fn open_macvtap(
    name: &str,
    index: u32,
    queues: u32,
    private_dir: &Path,
) -> io::Result<Vec<OwnedFd>> {
    let devno = std::fs::read_to_string(format!("/sys/class/net/{name}/macvtap/tap{index}/dev"))?;
    let (maj, min) = devno
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| io::Error::other(format!("unreadable device number '{}'", devno.trim())))?;
    let rdev = libc::makedev(maj, min);
    let dev = format!("/dev/tap{index}");
    let usable = std::fs::metadata(&dev)
        .map(|m| m.file_type().is_char_device() && m.rdev() == rdev)
        .unwrap_or(false);
    let path = if usable {
        std::path::PathBuf::from(dev)
    } else {
        let p = private_dir.join(format!("tap{index}"));
        let _ = std::fs::remove_file(&p);
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::other("NUL in path"))?;
        // SAFETY: a valid C string path; mknod creates a device node.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, rdev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        p
    };
    let mut out = Vec::new();
    for _ in 0..queues.max(1) {
        let f: File = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        out.push(OwnedFd::from(f));
    }
    if !usable {
        // The open descriptors keep working without the node.
        let _ = std::fs::remove_file(&path);
    }
    Ok(out)
}
