//! The command line, in libvirt's order (`qemuBuildCommandLine`).

use teamvirt_conf::model::DomainDef;

use super::aliases;
use super::ctx::{BuildOptions, Built, CommandError, Ctx, Monitor};
use super::devices;
use super::net;
use super::output::CommandLine;
use super::props::{escape_comma, Props};
use super::untranslated;
use crate::caps::QemuCaps;
use crate::machine::accel_of;
use crate::resolve::ActualNet;

fn env(cmd: &mut CommandLine, ctx: &Ctx) {
    let dir = ctx.domain_dir().display().to_string();
    cmd.env("LC_ALL", "C");
    // libvirt's order: PATH, HOME, USER, LOGNAME, then the rest.
    let given = |k: &str| {
        ctx.opts
            .env
            .as_ref()
            .and_then(|e| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    };
    if ctx.opts.test_env {
        cmd.env("PATH", "/bin");
    } else if let Some(p) = given("PATH") {
        cmd.env("PATH", p);
    } else {
        cmd.env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        );
    }
    cmd.env("HOME", dir.clone());
    if ctx.opts.test_env {
        cmd.env("USER", "test");
        cmd.env("LOGNAME", "test");
    } else if let Some(e) = &ctx.opts.env {
        for (k, v) in e.iter().filter(|(k, _)| k != "PATH" && k != "HOME") {
            cmd.env(k, v.clone());
        }
    } else {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        cmd.env("USER", user.clone());
        cmd.env("LOGNAME", std::env::var("LOGNAME").unwrap_or(user));
    }
    cmd.env("XDG_DATA_HOME", format!("{dir}/.local/share"));
    cmd.env("XDG_CACHE_HOME", format!("{dir}/.cache"));
    cmd.env("XDG_CONFIG_HOME", format!("{dir}/.config"));
    // A QEMU unpacked into a private prefix (e.g. bookworm-backports'
    // 10.0 beside the system's 7.2) must load its own modules, not the
    // system QEMU's from the compiled-in directory (QEMU aborts on
    // modules of another build): QEMU's own variable, passed on as set.
    if !ctx.opts.test_env {
        if let Some(m) = std::env::var_os("QEMU_MODULE_DIR") {
            cmd.env("QEMU_MODULE_DIR", m.to_string_lossy().into_owned());
        }
    }
    if ctx.caps.version == 0 {
        // QEMU predating -audiodev picked its audio driver from the environment.
        cmd.env("QEMU_AUDIO_DRV", "none");
    }
}

fn machine(cmd: &mut CommandLine, ctx: &Ctx) {
    let def = ctx.def;
    let name = def.machine().unwrap_or("pc");
    let accel = accel_of(def);
    let m = ctx
        .caps
        .machine_for(name, accel)
        .or_else(|| ctx.caps.machine(name));
    let mut s = escape_comma(name);
    s.push_str(",usb=off,dump-guest-core=off");
    if let Some(ram) = m.and_then(|m| m.default_ram_id.as_deref()) {
        s.push_str(&format!(",memory-backend={ram}"));
    }
    let acpi_on = def.features.as_ref().is_some_and(|f| f.acpi);
    if m.and_then(|m| m.acpi) == Some(true) && !acpi_on {
        s.push_str(",acpi=off");
    }
    cmd.opt("-machine", s);
    cmd.opt("-accel", accel.as_str());
}

fn memory_and_cpu(cmd: &mut CommandLine, ctx: &Ctx) {
    let def = ctx.def;
    if let Some(cpu) = &def.cpu {
        if let Some(model) = &cpu.model {
            cmd.opt("-cpu", escape_comma(&model.name));
        } else if matches!(
            cpu.mode.as_deref(),
            Some("host-passthrough") | Some("host-model")
        ) {
            cmd.opt("-cpu", "host");
        }
    }
    // QEMU wants whole MiB on x86.
    let kib = def.memory.kib.div_ceil(1024) * 1024;
    let m = ctx
        .caps
        .machine_for(def.machine().unwrap_or("pc"), accel_of(def))
        .or_else(|| ctx.caps.machine(def.machine().unwrap_or("pc")));
    if let Some(ram) = m.and_then(|m| m.default_ram_id.as_deref()) {
        cmd.opt("-m", format!("size={kib}k"));
        let mut p = Props::new();
        p.str("qom-type", "memory-backend-ram")
            .str("id", ram)
            .uint("size", kib * 1024);
        ctx.object(cmd, &p);
    } else {
        cmd.opt("-m", format!("{}", kib / 1024));
    }
    if ctx.caps.version == 0 {
        cmd.opt("-realtime", "mlock=off");
    } else {
        cmd.opt("-overcommit", "mem-lock=off");
    }
    let vcpus = def.vcpu.count.max(1);
    let topo = def
        .cpu
        .as_ref()
        .and_then(|c| c.extra.iter().find(|e| e.name == "topology"));
    let mut smp = format!("{vcpus}");
    match topo {
        Some(t) => {
            let get = |n: &str| t.attr(n).and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
            smp.push_str(&format!(",sockets={}", get("sockets")));
            if ctx.caps.has("smp-dies") {
                smp.push_str(&format!(",dies={}", get("dies")));
            }
            if ctx.caps.has("smp-clusters") && t.attr("clusters").is_some() {
                smp.push_str(&format!(",clusters={}", get("clusters")));
            }
            smp.push_str(&format!(
                ",cores={},threads={}",
                get("cores"),
                get("threads")
            ));
        }
        None => smp.push_str(&format!(",sockets={vcpus},cores=1,threads=1")),
    }
    cmd.opt("-smp", smp);
}

/// Build the command line for a domain that already went through
/// [`crate::defaults::define`], with interfaces resolved by
/// [`crate::resolve::resolve_interfaces`].
pub fn build(
    def: &DomainDef,
    caps: &QemuCaps,
    actual: &[ActualNet],
    opts: &BuildOptions,
) -> Result<Built, CommandError> {
    untranslated::check(def)?;
    let aliases = aliases::assign(def, actual);
    let ctx = Ctx {
        def,
        caps,
        opts,
        aliases: &aliases,
        actual,
    };
    let emulator = def
        .devices
        .emulator
        .as_ref()
        .map(|e| e.path.clone())
        .unwrap_or_else(|| caps.emulator.display().to_string());
    let mut cmd = CommandLine::new(emulator);
    env(&mut cmd, &ctx);
    cmd.opt(
        "-name",
        format!("guest={},debug-threads=on", escape_comma(&def.name)),
    );
    cmd.arg("-S");
    let mut key = Props::new();
    key.str("qom-type", "secret")
        .str("id", "masterKey0")
        .str("format", "raw")
        .str(
            "file",
            format!("{}/master-key.aes", ctx.domain_dir().display()),
        );
    ctx.object(&mut cmd, &key);
    machine(&mut cmd, &ctx);
    memory_and_cpu(&mut cmd, &ctx);
    if let Some(u) = &def.uuid {
        cmd.opt("-uuid", u.to_string());
    }
    if def.devices.graphics.is_empty() {
        cmd.opt("-display", "none");
    }
    cmd.arg("-no-user-config");
    cmd.arg("-nodefaults");
    let mon = match &opts.monitor {
        Monitor::Fd(fd) => format!("socket,id=charmonitor,fd={fd},server=on,wait=off"),
        Monitor::Path(p) => format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            escape_comma(&p.display().to_string())
        ),
    };
    cmd.opt("-chardev", mon);
    cmd.opt("-mon", "chardev=charmonitor,id=monitor,mode=control");
    let offset = def.clock.as_ref().map_or("utc", |c| c.offset.as_str());
    cmd.opt(
        "-rtc",
        if offset == "localtime" {
            "base=localtime"
        } else {
            "base=utc"
        },
    );
    cmd.arg("-no-shutdown");
    let accel = accel_of(def);
    let m = caps.machine_for(def.machine().unwrap_or("pc"), accel);
    if m.is_some_and(|m| m.acpi.is_none()) && !def.features.as_ref().is_some_and(|f| f.acpi) {
        // QEMU without a machine `acpi` property: the old switch.
        cmd.arg("-no-acpi");
    }
    boot(&mut cmd, def);
    devices::controllers(&mut cmd, &ctx)?;
    devices::disks(&mut cmd, &ctx)?;
    net::interfaces(&mut cmd, &ctx)?;
    devices::serials(&mut cmd, &ctx)?;
    devices::channels(&mut cmd, &ctx)?;
    devices::inputs(&ctx)?;
    devices::audio_and_graphics(&mut cmd, &ctx)?;
    devices::videos(&ctx)?;
    devices::watchdogs(&mut cmd, &ctx)?;
    let substitutions = net::hostdevs(&mut cmd, &ctx)?;
    devices::memballoon(&mut cmd, &ctx)?;
    if caps.has("seccomp-sandbox") {
        cmd.opt(
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        );
    }
    cmd.opt("-msg", "timestamp=on");
    Ok(Built {
        cmd,
        substitutions,
        aliases,
    })
}

fn boot(cmd: &mut CommandLine, def: &DomainDef) {
    let mut b = String::new();
    if let Some(menu) = &def.os.bootmenu {
        if menu.enable {
            b.push_str("menu=on,");
            if let Some(t) = menu.timeout {
                b.push_str(&format!("splash-time={t},"));
            }
        }
    }
    b.push_str("strict=on");
    cmd.opt("-boot", b);
    if let Some(k) = &def.os.kernel {
        cmd.opt("-kernel", k.clone());
    }
    if let Some(i) = &def.os.initrd {
        cmd.opt("-initrd", i.clone());
    }
    if let Some(c) = &def.os.cmdline {
        cmd.opt("-append", c.clone());
    }
    if let Some(d) = &def.os.dtb {
        cmd.opt("-dtb", d.clone());
    }
}
