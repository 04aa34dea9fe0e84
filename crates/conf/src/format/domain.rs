//! `<domain>` top level (libvirt `virDomainDefFormatInternal`, inactive).

use super::{devices, raws_named, raws_unordered, Attrs, XmlWriter};
use crate::model::*;

const OS_ORDER: &[&str] = &[
    "type",
    "firmware",
    "loader",
    "nvram",
    "init",
    "initarg",
    "initenv",
    "initdir",
    "inituser",
    "initgroup",
    "kernel",
    "initrd",
    "cmdline",
    "shim",
    "dtb",
    "root",
    "acpi",
    "boot",
    "bootmenu",
    "smbios",
    "bios",
];

const CPU_ORDER: &[&str] = &[
    "model",
    "vendor",
    "topology",
    "cache",
    "maxphysaddr",
    "feature",
    "numa",
];

impl DomainDef {
    /// Canonical inactive XML, as `virsh dumpxml --inactive` prints it.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::default();
        let mut at = Attrs::new().add("type", &self.type_);
        for (p, uri) in &self.namespaces {
            at = at.add(&format!("xmlns:{p}"), uri);
        }
        let at = at.raw(&self.extra_attrs);
        w.block("domain", at, |w| {
            for name in DOMAIN_ORDER {
                self.top(w, name);
                raws_named(w, &self.extra, name);
            }
            raws_unordered(w, &self.extra, DOMAIN_ORDER);
        });
        w.finish()
    }

    fn top(&self, w: &mut XmlWriter, name: &str) {
        match name {
            "name" => w.text("name", Attrs::new(), &self.name),
            "uuid" => {
                if let Some(u) = &self.uuid {
                    w.text("uuid", Attrs::new(), &u.to_string());
                }
            }
            "title" => {
                if let Some(t) = &self.title {
                    w.text("title", Attrs::new(), t);
                }
            }
            "description" => {
                if let Some(t) = &self.description {
                    w.text("description", Attrs::new(), t);
                }
            }
            "memory" => w.text(
                "memory",
                Attrs::new()
                    .on_off("dumpCore", self.memory.dump_core)
                    .add("unit", "KiB"),
                &self.memory.kib.to_string(),
            ),
            "currentMemory" => w.text(
                "currentMemory",
                Attrs::new().add("unit", "KiB"),
                &self.current_memory_kib().to_string(),
            ),
            "vcpu" => w.text(
                "vcpu",
                Attrs::new()
                    .add(
                        "placement",
                        self.vcpu.placement.as_deref().unwrap_or("static"),
                    )
                    .opt("cpuset", self.vcpu.cpuset.as_deref())
                    .num(
                        "current",
                        self.vcpu.current.filter(|&c| c != self.vcpu.count),
                    ),
                &self.vcpu.count.to_string(),
            ),
            "os" => os(w, &self.os),
            "features" => {
                if let Some(f) = &self.features {
                    features(w, f);
                }
            }
            "cpu" => {
                if let Some(c) = &self.cpu {
                    cpu(w, c);
                }
            }
            "clock" => match &self.clock {
                Some(c) => w.elem(
                    "clock",
                    Attrs::new().add("offset", &c.offset).raw(&c.extra_attrs),
                    |w| w.raws(&c.extra),
                ),
                None => w.empty("clock", Attrs::new().add("offset", "utc")),
            },
            "on_poweroff" => lifecycle(w, name, &self.on_poweroff, "destroy"),
            "on_reboot" => lifecycle(w, name, &self.on_reboot, "restart"),
            "on_crash" => lifecycle(w, name, &self.on_crash, "destroy"),
            "devices" => devices::devices(w, &self.devices),
            _ => {}
        }
    }
}

fn lifecycle(w: &mut XmlWriter, name: &str, l: &Option<Lifecycle>, default: &str) {
    w.text(
        name,
        Attrs::new(),
        l.as_ref().map_or(default, |l| l.action.as_str()),
    );
}

fn os(w: &mut XmlWriter, os: &Os) {
    w.block("os", Attrs::new().raw(&os.extra_attrs), |w| {
        for name in OS_ORDER {
            match *name {
                "type" => w.text(
                    "type",
                    Attrs::new()
                        .opt("arch", os.type_.arch.as_deref())
                        .opt("machine", os.type_.machine.as_deref()),
                    &os.type_.value,
                ),
                "loader" => w.raws(os.loader.iter()),
                "nvram" => w.raws(os.nvram.iter()),
                "kernel" => text_opt(w, "kernel", &os.kernel),
                "initrd" => text_opt(w, "initrd", &os.initrd),
                "cmdline" => text_opt(w, "cmdline", &os.cmdline),
                "dtb" => text_opt(w, "dtb", &os.dtb),
                "boot" => {
                    for b in &os.boot {
                        w.empty("boot", Attrs::new().add("dev", &b.dev));
                    }
                }
                "bootmenu" => {
                    if let Some(m) = &os.bootmenu {
                        w.empty(
                            "bootmenu",
                            Attrs::new()
                                .yes_no("enable", Some(m.enable))
                                .num("timeout", m.timeout),
                        );
                    }
                }
                _ => {}
            }
            raws_named(w, &os.extra, name);
        }
        raws_unordered(w, &os.extra, OS_ORDER);
    });
}

fn text_opt(w: &mut XmlWriter, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        w.text(name, Attrs::new(), v);
    }
}

fn features(w: &mut XmlWriter, f: &Features) {
    if !f.acpi && !f.apic && !f.pae && f.extra.is_empty() {
        return;
    }
    w.block("features", Attrs::new(), |w| {
        for name in FEATURE_ORDER {
            let set = match *name {
                "acpi" => f.acpi,
                "apic" => f.apic,
                "pae" => f.pae,
                _ => false,
            };
            if set {
                w.empty(name, Attrs::new());
            }
            raws_named(w, &f.extra, name);
        }
        raws_unordered(w, &f.extra, FEATURE_ORDER);
    });
}

fn cpu(w: &mut XmlWriter, c: &Cpu) {
    let at = Attrs::new()
        .opt("mode", c.mode.as_deref())
        .opt("match", c.match_.as_deref())
        .opt("check", c.check.as_deref())
        .on_off("migratable", c.migratable)
        .raw(&c.extra_attrs);
    if at.0.is_empty() && c.model.is_none() && c.extra.is_empty() {
        return;
    }
    w.elem("cpu", at, |w| {
        for name in CPU_ORDER {
            if *name == "model" {
                if let Some(m) = &c.model {
                    let at = Attrs::new()
                        .opt("fallback", m.fallback.as_deref())
                        .opt("vendor_id", m.vendor_id.as_deref());
                    if m.name.is_empty() {
                        w.empty("model", at);
                    } else {
                        w.text("model", at, &m.name);
                    }
                }
            }
            raws_named(w, &c.extra, name);
        }
        raws_unordered(w, &c.extra, CPU_ORDER);
    });
}
