//! `<devices>` and the device kinds other than `<interface>`.

use super::{
    device_info, hostdev_pci_source, interface, raws_named, raws_unordered, teaming, Attrs,
    XmlWriter,
};
use crate::model::*;

impl crate::parse::DeviceDef {
    /// Canonical XML of a device document (`attach-device` input): the
    /// element as `dumpxml --inactive` prints it inside `<devices>`, at
    /// the top level.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::default();
        match self {
            crate::parse::DeviceDef::Interface(i) => interface::interface(&mut w, i),
            crate::parse::DeviceDef::Hostdev(h) => hostdev(&mut w, h),
        }
        w.out
    }
}

pub(crate) fn devices(w: &mut XmlWriter, d: &Devices) {
    w.block("devices", Attrs::new(), |w| {
        for name in DEVICE_ORDER {
            match *name {
                "emulator" => {
                    if let Some(e) = &d.emulator {
                        w.text("emulator", Attrs::new(), &e.path);
                    }
                }
                "disk" => d.disks.iter().for_each(|x| disk(w, x)),
                "controller" => d.controllers.iter().for_each(|x| controller(w, x)),
                "interface" => d.interfaces.iter().for_each(|x| interface::interface(w, x)),
                "serial" => d.serials.iter().for_each(|x| chardev(w, "serial", x)),
                "console" => d.consoles.iter().for_each(|x| chardev(w, "console", x)),
                "channel" => d.channels.iter().for_each(|x| chardev(w, "channel", x)),
                "input" => d.inputs.iter().for_each(|x| input(w, x)),
                "graphics" => d.graphics.iter().for_each(|x| graphics(w, x)),
                "audio" => d.audios.iter().for_each(|x| audio(w, x)),
                "video" => d.videos.iter().for_each(|x| video(w, x)),
                "hostdev" => d.hostdevs.iter().for_each(|x| hostdev(w, x)),
                "watchdog" => d.watchdogs.iter().for_each(|x| watchdog(w, x)),
                "memballoon" => d.memballoon.iter().for_each(|x| memballoon(w, x)),
                "panic" => d.panics.iter().for_each(|x| panic(w, x)),
                _ => {}
            }
            raws_named(w, &d.extra, name);
        }
        raws_unordered(w, &d.extra, DEVICE_ORDER);
    });
}

const DISK_ORDER: &[&str] = &[
    "driver",
    "auth",
    "source",
    "backingStore",
    "backenddomain",
    "geometry",
    "blockio",
    "mirror",
    "target",
    "iotune",
    "readonly",
    "shareable",
    "transient",
    "serial",
    "wwn",
    "vendor",
    "product",
    "encryption",
];

fn disk(w: &mut XmlWriter, d: &Disk) {
    let at = Attrs::new()
        .add("type", &d.type_)
        .add("device", d.device.as_deref().unwrap_or("disk"))
        .raw(&d.extra_attrs);
    w.block("disk", at, |w| {
        for name in DISK_ORDER {
            match *name {
                "driver" => {
                    if let Some(dr) = &d.driver {
                        let at = Attrs::new()
                            .opt("name", dr.name.as_deref())
                            .opt("type", dr.type_.as_deref())
                            .opt("cache", dr.cache.as_deref())
                            .opt("io", dr.io.as_deref())
                            .opt("discard", dr.discard.as_deref())
                            .raw(&dr.extra_attrs);
                        if !at.0.is_empty() || !dr.extra.is_empty() {
                            w.elem("driver", at, |w| w.raws(&dr.extra));
                        }
                    }
                }
                "source" => {
                    if let Some(s) = &d.source {
                        let at = Attrs::new()
                            .opt("file", s.file.as_deref())
                            .opt("dev", s.dev.as_deref())
                            .raw(&s.extra_attrs);
                        if !at.0.is_empty() || !s.extra.is_empty() {
                            w.elem("source", at, |w| w.raws(&s.extra));
                        }
                    }
                }
                "target" => w.empty(
                    "target",
                    Attrs::new()
                        .add("dev", &d.target.dev)
                        .opt("bus", d.target.bus.as_deref())
                        .raw(&d.target.extra_attrs),
                ),
                "readonly" if d.readonly => w.empty("readonly", Attrs::new()),
                "shareable" if d.shareable => w.empty("shareable", Attrs::new()),
                "transient" if d.transient => w.empty("transient", Attrs::new()),
                "serial" => {
                    if let Some(s) = &d.serial {
                        w.text("serial", Attrs::new(), s);
                    }
                }
                _ => {}
            }
            raws_named(w, &d.extra, name);
        }
        device_info(w, &d.info);
        raws_unordered(w, &d.extra, DISK_ORDER);
    });
}

fn controller(w: &mut XmlWriter, c: &Controller) {
    let at = Attrs::new()
        .add("type", &c.type_)
        .num("index", c.index)
        .opt("model", c.model.as_deref())
        .num("ports", c.ports)
        .num("vectors", c.vectors)
        .raw(&c.extra_attrs);
    w.elem("controller", at, |w| {
        if let Some(m) = &c.model_name {
            w.empty("model", Attrs::new().add("name", &m.name));
        }
        if let Some(t) = &c.target {
            let at = Attrs::new()
                .num("chassisNr", t.chassis_nr)
                .num("chassis", t.chassis)
                .opt("port", t.port.map(|p| format!("0x{p:x}")))
                .num("busNr", t.bus_nr)
                .num("index", t.index)
                .on_off("hotplug", t.hotplug)
                .num("memReserve", t.mem_reserve)
                .raw(&t.extra_attrs);
            w.elem("target", at, |w| {
                if let Some(n) = t.node {
                    w.text("node", Attrs::new(), &n.to_string());
                }
            });
        }
        raws_named(w, &c.extra, "driver");
        device_info(w, &c.info);
        w.raws(c.extra.iter().filter(|e| e.name != "driver"));
    });
}

fn hostdev(w: &mut XmlWriter, h: &Hostdev) {
    let subsys = h.mode == "subsystem";
    let at = Attrs::new()
        .add("mode", &h.mode)
        .add("type", &h.type_)
        .yes_no(
            "managed",
            if subsys {
                Some(h.managed.unwrap_or(false))
            } else {
                None
            },
        )
        .on_off("display", h.display)
        .on_off("ramfb", h.ramfb)
        .raw(&h.extra_attrs);
    w.block("hostdev", at, |w| {
        if let Some(d) = &h.driver {
            let at = Attrs::new()
                .opt("name", d.name.as_deref())
                .raw(&d.extra_attrs);
            w.empty("driver", at);
        }
        let s = &h.source;
        if let Some(p) = &s.pci {
            hostdev_pci_source(w, p, false, &s.extra_attrs);
        } else if let Some(u) = &s.usb {
            w.elem("source", Attrs::new().raw(&s.extra_attrs), |w| {
                if let Some(v) = &u.vendor {
                    w.empty("vendor", Attrs::new().add("id", v));
                }
                if let Some(p) = &u.product {
                    w.empty("product", Attrs::new().add("id", p));
                }
                if u.bus.is_some() || u.device.is_some() {
                    w.empty(
                        "address",
                        Attrs::new().num("bus", u.bus).num("device", u.device),
                    );
                }
            });
        } else if !s.extra.is_empty() || !s.extra_attrs.is_empty() {
            w.elem("source", Attrs::new().raw(&s.extra_attrs), |w| {
                w.raws(&s.extra)
            });
        }
        if let Some(t) = &h.teaming {
            teaming(w, t);
        }
        if h.readonly {
            w.empty("readonly", Attrs::new());
        }
        if h.shareable {
            w.empty("shareable", Attrs::new());
        }
        device_info(w, &h.info);
        w.raws(&h.extra);
    });
}

fn chardev(w: &mut XmlWriter, name: &str, c: &Chardev) {
    w.elem(
        name,
        Attrs::new().add("type", &c.type_).raw(&c.extra_attrs),
        |w| {
            // A pty's path is only known while running: inactive XML drops it;
            // so does a unix source without a path (libvirt prints mode and
            // path only together: the path is chosen at start).
            let pathless_unix = c.type_ == "unix"
                && c.source
                    .as_ref()
                    .is_some_and(|s| s.attr("path").is_none() && s.children.is_empty());
            if c.type_ != "pty" && !pathless_unix {
                w.raws(c.source.iter());
            }
            if let Some(t) = &c.target {
                let at = Attrs::new()
                    .opt("type", t.type_.as_deref())
                    .opt("name", t.name.as_deref())
                    .num("port", t.port)
                    .raw(&t.extra_attrs);
                w.elem("target", at, |w| {
                    if let Some(m) = &t.model_name {
                        w.empty("model", Attrs::new().add("name", m));
                    }
                });
            }
            raws_named(w, &c.extra, "log");
            raws_named(w, &c.extra, "protocol");
            device_info(w, &c.info);
            w.raws(
                c.extra
                    .iter()
                    .filter(|e| e.name != "log" && e.name != "protocol"),
            );
        },
    );
}

fn input(w: &mut XmlWriter, i: &Input) {
    let at = Attrs::new()
        .add("type", &i.type_)
        .opt("bus", i.bus.as_deref())
        .raw(&i.extra_attrs);
    w.elem("input", at, |w| {
        w.raws(&i.extra);
        device_info(w, &i.info);
    });
}

fn graphics(w: &mut XmlWriter, g: &Graphics) {
    w.elem(
        "graphics",
        Attrs::new().add("type", &g.type_).raw(&g.attrs),
        |w| w.raws(&g.children),
    );
}

fn audio(w: &mut XmlWriter, a: &Audio) {
    let at = Attrs::new()
        .num("id", a.id)
        .add("type", &a.type_)
        .raw(&a.extra_attrs);
    w.elem("audio", at, |w| w.raws(&a.extra));
}

fn video(w: &mut XmlWriter, v: &Video) {
    w.elem("video", Attrs::new(), |w| {
        if v.model_type.is_some() || !v.model_attrs.is_empty() {
            w.empty(
                "model",
                Attrs::new()
                    .opt("type", v.model_type.as_deref())
                    .raw(&v.model_attrs),
            );
        }
        raws_named(w, &v.extra, "model");
        raws_named(w, &v.extra, "driver");
        device_info(w, &v.info);
        w.raws(
            v.extra
                .iter()
                .filter(|e| e.name != "model" && e.name != "driver"),
        );
    });
}

fn watchdog(w: &mut XmlWriter, x: &Watchdog) {
    let at = Attrs::new()
        .add("model", &x.model)
        .add("action", x.action.as_deref().unwrap_or("reset"))
        .raw(&x.extra_attrs);
    w.elem("watchdog", at, |w| device_info(w, &x.info));
}

fn memballoon(w: &mut XmlWriter, m: &Memballoon) {
    let at = Attrs::new()
        .add("model", &m.model)
        .on_off("autodeflate", m.autodeflate)
        .on_off("freePageReporting", m.free_page_reporting)
        .raw(&m.extra_attrs);
    w.elem("memballoon", at, |w| {
        device_info(w, &m.info);
        w.raws(&m.extra);
    });
}

fn panic(w: &mut XmlWriter, p: &Panic) {
    let at = Attrs::new()
        .opt("model", p.model.as_deref())
        .raw(&p.extra_attrs);
    w.elem("panic", at, |w| device_info(w, &p.info));
}
