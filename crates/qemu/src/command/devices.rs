//! Controllers, disks, serials, audio, graphics, watchdogs and the balloon.

use teamvirt_conf::model::{Address, DomainDef, RawElement};
use teamvirt_conf::Pos;

use super::ctx::{boot_index_disk, need_pci, CommandError, Ctx};
use super::output::CommandLine;
use super::props::{escape_comma, Props};
use crate::machine::{is_i440fx, is_q35};

fn unsupported(what: impl Into<String>, pos: Pos) -> CommandError {
    CommandError::Unsupported {
        what: what.into(),
        at: pos.is_known().then_some((pos.line, pos.col)),
    }
}

/// Controllers in libvirt's type order: PCI, USB, SCSI, IDE, SATA,
/// virtio-serial; implicit ones (roots, PIIX3 IDE, ICH9 SATA) emit nothing.
pub fn controllers(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    let def = ctx.def;
    let machine = def.machine().unwrap_or_default();
    for kind in ["pci", "usb", "scsi", "ide", "sata", "virtio-serial"] {
        for (i, c) in def.devices.controllers.iter().enumerate() {
            if c.type_ != kind {
                continue;
            }
            let idx = c.index.unwrap_or(0);
            let id = ctx.aliases.controllers[i].clone();
            let model = c.model.as_deref();
            let mut p = Props::new();
            match kind {
                "pci" => {
                    let Some(name) = c.model_name.as_ref().map(|m| m.name.as_str()) else {
                        continue;
                    };
                    if matches!(model, Some("pci-root") | Some("pcie-root")) {
                        continue;
                    }
                    p.str("driver", name);
                    let t = c.target.as_ref();
                    match model {
                        Some("pcie-root-port") | Some("pcie-switch-downstream-port") => {
                            if let Some(port) = t.and_then(|t| t.port) {
                                p.uint("port", u64::from(port));
                            }
                            if let Some(ch) = t.and_then(|t| t.chassis) {
                                p.uint("chassis", u64::from(ch));
                            }
                            p.str("id", id);
                            if let Some(h) = t.and_then(|t| t.hotplug) {
                                p.bool("hotplug", h);
                            }
                        }
                        Some("pci-bridge") => {
                            if let Some(n) = t.and_then(|t| t.chassis_nr) {
                                p.uint("chassis_nr", u64::from(n));
                            }
                            p.str("id", id);
                        }
                        _ => {
                            p.str("id", id);
                        }
                    }
                }
                "usb" => match model {
                    Some("none") => continue,
                    None => {
                        // No model known to this QEMU: the legacy switch.
                        cmd.arg("-usb");
                        continue;
                    }
                    Some(m) => {
                        let driver = match m {
                            "piix3-uhci" => "piix3-usb-uhci",
                            "piix4-uhci" => "piix4-usb-uhci",
                            "ehci" => "usb-ehci",
                            "ich9-ehci1" => "ich9-usb-ehci1",
                            "ich9-uhci1" => "ich9-usb-uhci1",
                            "ich9-uhci2" => "ich9-usb-uhci2",
                            "ich9-uhci3" => "ich9-usb-uhci3",
                            "nec-xhci" => "nec-usb-xhci",
                            "qemu-xhci" => "qemu-xhci",
                            "pci-ohci" => "pci-ohci",
                            other => {
                                return Err(unsupported(
                                    format!("<controller type='usb' model='{other}'>"),
                                    c.pos,
                                ))
                            }
                        };
                        p.str("driver", driver).str("id", id);
                        if let Some(ports) = c.ports {
                            p.uint("p2", u64::from(ports)).uint("p3", u64::from(ports));
                        }
                    }
                },
                "ide" => {
                    if idx == 0 && is_i440fx(machine) {
                        continue;
                    }
                    return Err(unsupported("a second <controller type='ide'>", c.pos));
                }
                "sata" => {
                    if idx == 0 && is_q35(machine) {
                        continue;
                    }
                    p.str("driver", "ahci").str("id", id);
                }
                "virtio-serial" => {
                    p.str("driver", "virtio-serial-pci").str("id", id);
                    if let Some(v) = c.vectors {
                        p.uint("vectors", u64::from(v));
                    }
                }
                "scsi" => match model {
                    Some("virtio-scsi") => {
                        p.str("driver", "virtio-scsi-pci").str("id", id);
                    }
                    Some("lsilogic") => {
                        p.str("driver", "lsi").str("id", id);
                    }
                    other => {
                        return Err(unsupported(
                            format!("<controller type='scsi' model='{}'>", other.unwrap_or("")),
                            c.pos,
                        ))
                    }
                },
                _ => continue,
            }
            let a = need_pci(&c.info.address, &ctx.aliases.controllers[i])?;
            ctx.pci_addr_props(&mut p, a);
            ctx.device(cmd, &p);
        }
    }
    Ok(())
}

/// Disks: `-blockdev` storage (and format when not raw) plus the frontend.
pub fn disks(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    let def: &DomainDef = ctx.def;
    for (i, disk) in def.devices.disks.iter().enumerate() {
        let alias = &ctx.aliases.disks[i];
        let n = i + 1;
        let src = disk.source.as_ref();
        let path = src.and_then(|s| s.file.clone().or_else(|| s.dev.clone()));
        let format = disk
            .driver
            .as_ref()
            .and_then(|d| d.type_.as_deref())
            .unwrap_or("raw");
        let readonly = disk.readonly || disk.device.as_deref() == Some("cdrom");
        let storage = format!("libvirt-{n}-storage");
        let mut drive_name = storage.clone();
        if let Some(path) = &path {
            let driver = match disk.type_.as_str() {
                "block" => "host_device",
                "file" => "file",
                other => return Err(unsupported(format!("<disk type='{other}'>"), disk.pos)),
            };
            if ctx.caps.blockdev() {
                let mut s = Props::new();
                s.str("driver", driver)
                    .str("filename", path.clone())
                    .str("node-name", storage.clone());
                if format == "raw" {
                    s.bool("read-only", readonly);
                    cmd.opt("-blockdev", s.to_json());
                } else {
                    s.bool("auto-read-only", true).str("discard", "unmap");
                    cmd.opt("-blockdev", s.to_json());
                    let fmt = format!("libvirt-{n}-format");
                    let mut f = Props::new();
                    f.str("node-name", fmt.clone())
                        .bool("read-only", readonly)
                        .str("driver", format)
                        .str("file", storage.clone());
                    cmd.opt("-blockdev", f.to_json());
                    drive_name = fmt;
                }
            } else {
                drive_name = format!("drive-{alias}");
                cmd.opt(
                    "-drive",
                    format!(
                        "file={},format={format},if=none,id={drive_name}",
                        escape_comma(path)
                    ),
                );
            }
        } else if disk.device.as_deref() != Some("cdrom") {
            return Err(unsupported("a <disk> without <source>", disk.pos));
        }
        let mut p = Props::new();
        let bus = disk.target.bus.as_deref().unwrap_or("ide");
        let cd = disk.device.as_deref() == Some("cdrom");
        match (bus, &disk.info.address) {
            ("ide", Some(Address::Drive(d))) | ("sata", Some(Address::Drive(d))) => {
                p.str("driver", if cd { "ide-cd" } else { "ide-hd" });
                let ctrl_alias = def
                    .devices
                    .controllers
                    .iter()
                    .position(|c| c.type_ == bus && c.index == Some(d.controller))
                    .map(|ci| ctx.aliases.controllers[ci].clone())
                    .unwrap_or_else(|| "ide".into());
                if bus == "ide" {
                    p.str("bus", format!("{ctrl_alias}.{}", d.bus))
                        .uint("unit", u64::from(d.unit));
                } else {
                    p.str("bus", format!("{ctrl_alias}.{}", d.unit));
                }
                if path.is_some() {
                    p.str("drive", drive_name);
                }
                p.str("id", alias.clone());
            }
            ("virtio", _) => {
                p.str("driver", "virtio-blk-pci");
                let a = need_pci(&disk.info.address, alias)?;
                ctx.pci_addr_props(&mut p, a);
                p.str("drive", drive_name).str("id", alias.clone());
            }
            _ => return Err(unsupported(format!("<disk> on bus '{bus}'"), disk.pos)),
        }
        if let Some(b) = boot_index_disk(def, i) {
            p.uint("bootindex", u64::from(b));
        }
        ctx.device(cmd, &p);
    }
    Ok(())
}

pub fn serials(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    for (i, s) in ctx.def.devices.serials.iter().enumerate() {
        let id = &ctx.aliases.serials[i];
        let chr = format!("char{id}");
        // `<source path=...>` of the file and unix backends.
        let path = s
            .source
            .as_ref()
            .and_then(|e| e.attr("path"))
            .unwrap_or_default();
        let backend = match s.type_.as_str() {
            "pty" => format!("pty,id={chr}"),
            "null" => format!("null,id={chr}"),
            "file" => {
                let mut v = format!("file,id={chr},path={}", escape_comma(path));
                // libvirt's qemuBuildChardevStr: `append` as written (a
                // missing one is QEMU's default, truncate).
                if let Some(a) = switch_attr(s.source.as_ref(), "append")? {
                    v.push_str(&format!(",append={a}"));
                }
                v
            }
            "unix" => format!(
                "socket,id={chr},path={},server=on,wait=off",
                escape_comma(path)
            ),
            other => return Err(unsupported(format!("<serial type='{other}'>"), s.pos)),
        };
        cmd.opt("-chardev", format!("{backend}{}", chardev_log(&s.extra)?));
        let t = s.target.as_ref();
        let model = t
            .and_then(|t| t.model_name.as_deref())
            .unwrap_or("isa-serial");
        if model != "isa-serial" {
            return Err(unsupported(format!("serial model '{model}'"), s.pos));
        }
        let mut p = Props::new();
        p.str("driver", "isa-serial")
            .str("chardev", chr)
            .str("id", id.clone());
        p.uint(
            "index",
            u64::from(t.and_then(|t| t.port).unwrap_or(i as u32)),
        );
        ctx.device(cmd, &p);
    }
    Ok(())
}

/// `<channel type='unix'>` with a virtio target: a listening socket
/// chardev and its `virtserialport` (libvirt's qemuBuildChrChardevStr +
/// qemuBuildChrDeviceProps). Without `<source path>` the socket is
/// `CHANNEL_DIR/NAME` ([`Ctx::channel_dir`]).
pub fn channels(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    for (i, c) in ctx.def.devices.channels.iter().enumerate() {
        let id = &ctx.aliases.channels[i];
        let chr = format!("char{id}");
        let t = c.target.as_ref();
        let ttype = t.and_then(|t| t.type_.as_deref()).unwrap_or_default();
        if ttype != "virtio" {
            return Err(unsupported(
                format!("<channel> with target type '{ttype}'"),
                t.map_or(c.pos, |t| t.pos),
            ));
        }
        if c.type_ != "unix" {
            return Err(unsupported(format!("<channel type='{}'>", c.type_), c.pos));
        }
        let name = t.and_then(|t| t.name.as_deref());
        let mode = c
            .source
            .as_ref()
            .and_then(|s| s.attr("mode"))
            .unwrap_or("bind");
        let path = match (c.source_path(), name) {
            (Some(p), _) => p.to_owned(),
            (None, Some(n)) if mode == "bind" => ctx.channel_dir().join(n).display().to_string(),
            _ => return Err(unsupported(
                "a <channel type='unix'> without <source path> needs a bind mode and a target name",
                c.pos,
            )),
        };
        let mut backend = format!("socket,id={chr},path={}", escape_comma(&path));
        if mode == "bind" {
            backend.push_str(",server=on,wait=off");
        }
        cmd.opt("-chardev", format!("{backend}{}", chardev_log(&c.extra)?));
        let Some(Address::VirtioSerial(a)) = &c.info.address else {
            return Err(CommandError::NoAddress(id.clone()));
        };
        let ctrl = ctx
            .def
            .devices
            .controllers
            .iter()
            .position(|k| k.type_ == "virtio-serial" && k.index == Some(a.controller))
            .map_or_else(
                || format!("virtio-serial{}", a.controller),
                |k| ctx.aliases.controllers[k].clone(),
            );
        let mut p = Props::new();
        p.str("driver", "virtserialport")
            .str("bus", format!("{ctrl}.{}", a.bus))
            .uint("nr", u64::from(a.port))
            .str("chardev", chr)
            .str("id", id.clone());
        if let Some(n) = name {
            p.str("name", n);
        }
        ctx.device(cmd, &p);
    }
    Ok(())
}

/// An on/off attribute of `el` (libvirt's virTristateSwitch), refused,
/// named with its line, when it is anything else.
fn switch_attr(el: Option<&RawElement>, name: &str) -> Result<Option<&'static str>, CommandError> {
    match el.and_then(|e| e.attr(name)) {
        None => Ok(None),
        Some("on") => Ok(Some("on")),
        Some("off") => Ok(Some("off")),
        Some(v) => Err(unsupported(
            format!("{name}='{v}' (on or off)"),
            el.map_or_else(Pos::default, |e| e.pos),
        )),
    }
}

/// `,logfile=FILE[,logappend=on|off]` for a chardev's `<log file
/// append/>` (libvirt's qemuBuildChardevStr), empty without one.
fn chardev_log(extra: &[RawElement]) -> Result<String, CommandError> {
    let Some(log) = extra.iter().find(|e| e.name == "log") else {
        return Ok(String::new());
    };
    let Some(file) = log.attr("file") else {
        return Ok(String::new());
    };
    let mut v = format!(",logfile={}", escape_comma(file));
    if let Some(a) = switch_attr(Some(log), "append")? {
        v.push_str(&format!(",logappend={a}"));
    }
    Ok(v)
}

pub fn inputs(ctx: &Ctx) -> Result<(), CommandError> {
    for inp in &ctx.def.devices.inputs {
        if inp.bus.as_deref().unwrap_or("ps2") != "ps2" {
            return Err(unsupported(
                format!(
                    "<input type='{}' bus='{}'>",
                    inp.type_,
                    inp.bus.as_deref().unwrap_or("")
                ),
                inp.pos,
            ));
        }
    }
    Ok(())
}

pub fn audio_and_graphics(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    let json_audio = ctx.caps.version != 0;
    let mut first_audio: Option<u32> = None;
    for a in &ctx.def.devices.audios {
        let id = a.id.unwrap_or(1);
        first_audio.get_or_insert(id);
        if !json_audio {
            continue;
        }
        if a.type_ != "none" {
            return Err(unsupported(format!("<audio type='{}'>", a.type_), a.pos));
        }
        let mut p = Props::new();
        p.str("id", format!("audio{id}")).str("driver", "none");
        cmd.opt("-audiodev", p.to_json());
    }
    for g in &ctx.def.devices.graphics {
        if g.type_ != "vnc" {
            return Err(unsupported(format!("<graphics type='{}'>", g.type_), g.pos));
        }
        let attr = |n: &str| {
            g.attrs
                .iter()
                .find(|a| a.name == n)
                .map(|a| a.value.clone())
        };
        let listen = g
            .children
            .iter()
            .find(|c| c.name == "listen")
            .and_then(|l| l.attr("address").map(str::to_string))
            .or_else(|| attr("listen"))
            .unwrap_or_else(|| "127.0.0.1".into());
        let port: i64 = attr("port").and_then(|p| p.parse().ok()).unwrap_or(-1);
        // Autoport: libvirt picks the first free port from 5900; its tests get 5900.
        let display = if port >= 5900 { port - 5900 } else { 0 };
        let mut s = format!("{listen}:{display}");
        // libvirt's place for it (after `share=`, before `tls-creds=`); the
        // password itself is set over QMP after start (`vncauth`).
        if crate::vncauth::has_password(g) {
            s.push_str(",password=on");
        }
        if let Some(a) = first_audio {
            s.push_str(&format!(",audiodev=audio{a}"));
        }
        cmd.opt("-vnc", s);
    }
    Ok(())
}

pub fn videos(ctx: &Ctx) -> Result<(), CommandError> {
    for v in &ctx.def.devices.videos {
        if !matches!(v.model_type.as_deref(), Some("none")) {
            return Err(unsupported(
                format!(
                    "<video><model type='{}'/>",
                    v.model_type.as_deref().unwrap_or("")
                ),
                v.pos,
            ));
        }
    }
    Ok(())
}

pub fn watchdogs(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    for (i, w) in ctx.def.devices.watchdogs.iter().enumerate() {
        match w.model.as_str() {
            "itco" => cmd.opt("-global", "ICH9-LPC.noreboot=off"),
            "i6300esb" | "ib700" => {
                let mut p = Props::new();
                p.str("driver", w.model.clone())
                    .str("id", ctx.aliases.watchdogs[i].clone());
                if w.model == "i6300esb" {
                    let a = need_pci(&w.info.address, &ctx.aliases.watchdogs[i])?;
                    ctx.pci_addr_props(&mut p, a);
                }
                ctx.device(cmd, &p);
            }
            other => return Err(unsupported(format!("<watchdog model='{other}'>"), w.pos)),
        }
    }
    if let Some(w) = ctx.def.devices.watchdogs.first() {
        let action = match w.action.as_deref().unwrap_or("reset") {
            "dump" => "pause",
            a => a,
        };
        cmd.opt("-watchdog-action", action.to_string());
    }
    Ok(())
}

pub fn memballoon(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    let Some(m) = &ctx.def.devices.memballoon else {
        return Ok(());
    };
    let driver = match m.model.as_str() {
        "none" => return Ok(()),
        "virtio" => "virtio-balloon-pci",
        "virtio-transitional" => "virtio-balloon-pci-transitional",
        "virtio-non-transitional" => "virtio-balloon-pci-non-transitional",
        other => return Err(unsupported(format!("<memballoon model='{other}'>"), m.pos)),
    };
    let mut p = Props::new();
    p.str("driver", driver)
        .str("id", ctx.aliases.balloon.clone());
    let a = need_pci(&m.info.address, &ctx.aliases.balloon)?;
    ctx.pci_addr_props(&mut p, a);
    p.tristate("deflate-on-oom", m.autodeflate);
    p.tristate("free-page-reporting", m.free_page_reporting);
    ctx.device(cmd, &p);
    Ok(())
}
