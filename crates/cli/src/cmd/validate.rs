//! `teamvirt validate FILE...`: check domain, network, network-port and
//! device (`attach-device` input) XML: libvirt's RELAX NG schema first
//! (`teamvirt_conf::schema`, as `virt-xml-validate`), then libvirt's parse
//! and checks.
//!
//! Domains also get the placement checks of issue 3 item 8 (a failover
//! primary QEMU can never plug, q35 without ACPI, the rtl8139 trap). They
//! need the QEMU driver's define-time defaults, hence QEMU capabilities:
//! `--caps`, `--emulator`, or else the installed QEMU; without any, they
//! are skipped with a note, never an error.

use crate::out::outln;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use teamvirt_conf::{AnyDef, DeviceDef, Diagnostic, DomainDef};
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::resolve::{resolve_for_checks, NetworkMap};

use crate::cmd::qemu_opts::{probe_target, QemuOpts};
use crate::render;

#[derive(clap::Args)]
#[command(
    about = "Check domain, network, network-port or device XML like libvirt does, plus teaming checks libvirt forgets",
    long_about = "Check domain, network or network-port XML (kind chosen by the root element) the way \
                  `virsh define --validate` on the QEMU driver would, with libvirt's error texts, plus teaming \
                  checks libvirt does not make (as warnings with hints).\n\n\
                  First the document is checked against libvirt's RELAX NG schema for its root, as \
                  `virt-xml-validate` does (libvirt 10.7.0's domain.rng, network.rng, networkport.rng, built \
                  in): an element or attribute the schema does not allow there, or a value it does not \
                  allow, is an error at its file:line:col, worded like libxml2's Relax-NG messages, with \
                  \"did you mean\" when it is close to an allowed name. A document the schema refuses gets \
                  no further checks. An <interface> or <hostdev> document \
                  (`attach-device` input) is checked as a device (against the schema's definition of that \
                  device); whether the standby a primary names \
                  exists is up to the running domain (`attach-device` checks it).\n\n\
                  The checks on where failover primaries land (PCI placement, ACPI) need QEMU's \
                  capabilities: from --caps, from --emulator, or else from the installed qemu-system-x86_64 \
                  (probed once, then cached). A domain's <emulator> is probed only when it is that same \
                  binary: a checking verb never runs a program named by the XML it checks, so any other \
                  <emulator> needs --emulator. Without capabilities those checks are skipped, with a note.\n\n\
                  Errors and warnings go to stderr in compiler style. Exit status: 0 when every file is \
                  valid, 1 otherwise."
)]
pub struct Args {
    /// XML files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print JSON instead of text: a report on stdout, nothing on stderr.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub qemu: QemuOpts,
}

/// Where the QEMU capabilities for the QEMU-side checks come from, shared
/// by every file of one run (a binary is probed once).
pub struct QemuSide {
    /// From `--caps`/`--emulator`: the user asked for these.
    explicit: Option<QemuCaps>,
    cache_dir: Result<PathBuf, String>,
    probed: HashMap<PathBuf, Result<QemuCaps, String>>,
    networks: NetworkMap,
    /// Things the user should know that are not about a file's content
    /// (checks skipped and why); each said once.
    pub notes: Vec<String>,
}

impl QemuSide {
    /// Loads `--caps`/`--emulator` and `--network` now: when the user
    /// names them, failing to read them is an error.
    pub fn new(opts: &QemuOpts) -> Result<QemuSide, String> {
        Ok(QemuSide {
            explicit: opts.explicit_caps()?,
            cache_dir: opts.cache_dir(),
            probed: HashMap::new(),
            networks: opts.load_networks()?,
            notes: Vec::new(),
        })
    }

    /// The capabilities for `def`; `None` (and a note) when there are none.
    fn caps_for(&mut self, def: &DomainDef) -> Option<QemuCaps> {
        if let Some(c) = &self.explicit {
            return Some(c.clone());
        }
        // Never a program the checked XML names: only the default emulator.
        let bin = match probe_target(def) {
            Ok(b) => b,
            Err(why) => {
                self.note(format!(
                    "QEMU-side checks (failover primary placement, q35 ACPI, machine limits) \
                     skipped: {why}"
                ));
                return None;
            }
        };
        let cache_dir = match &self.cache_dir {
            Ok(d) => d,
            Err(why) => {
                let note = format!("QEMU-side checks skipped: {why}");
                self.note(note);
                return None;
            }
        };
        let r = self.probed.entry(bin.clone()).or_insert_with(|| {
            crate::block_on(teamvirt_runtime::domain::probe_caps(&bin, cache_dir))
                .map_err(|e| e.to_string())
        });
        match r {
            Ok(c) => Some(c.clone()),
            Err(e) => {
                let note = format!(
                    "QEMU-side checks (failover primary placement, q35 ACPI) skipped: {e}; \
                     pass --caps FILE (libvirt capabilities XML) or --emulator PATH to run them"
                );
                self.note(note);
                None
            }
        }
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// Code of libvirt's start-time errors found by resolving networks.
pub const START_ERROR: &str = "network-resolve";

/// Result of checking one file: its kind (when it parsed), every diagnostic
/// (with the file set) and the source text (for quoting lines).
pub struct Checked {
    pub def: Option<AnyDef>,
    pub diagnostics: Vec<Diagnostic>,
    pub text: Option<String>,
    /// Whether the QEMU-side placement checks ran (domains only).
    pub topology_checked: bool,
    /// The domain after QEMU's define-time defaults, when they applied.
    pub defined: Option<DomainDef>,
}

impl Checked {
    pub fn valid(&self) -> bool {
        self.def.is_some() && !self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Load, parse and validate one file: libvirt's checks (the QEMU driver's
/// knowing whether QEMU has failover), teamvirt's teaming checks, and, for
/// a domain libvirt accepts, the placement checks on the domain after
/// QEMU's define-time defaults (`def` stays the domain as
/// written; `defined` is the one with the defaults).
///
/// Some of libvirt's errors only come when the domain starts (how its
/// `type='network'` interfaces resolve): `virsh define` accepts the XML.
/// `start_errors_fatal` makes them errors (`validate`: the domain can never
/// run); otherwise they are warnings (`format`: prints what define keeps).
///
/// `schema` first checks the document against libvirt's RELAX NG schema
/// (`validate`, as `virt-xml-validate`); a document it refuses gets its
/// schema errors and no further checks (what `virsh define --validate`
/// reports), since libvirt's parse of a misspelt element only confuses.
pub fn check_all(
    path: &Path,
    qemu: &mut QemuSide,
    start_errors_fatal: bool,
    schema: bool,
) -> Checked {
    let (def, diagnostics, text) = match parse(path, schema) {
        Ok(x) => x,
        Err(c) => return *c,
    };
    let mut c = Checked {
        def: Some(def),
        diagnostics,
        text: Some(text),
        topology_checked: false,
        defined: None,
    };
    if let Some(AnyDef::Device(dev)) = &c.def {
        let found = check_device(dev, qemu);
        add(&mut c.diagnostics, found, path);
        return c;
    }
    let Some(AnyDef::Domain(d)) = &c.def else {
        return c;
    };
    let caps = qemu.caps_for(d);
    let v = teamvirt_qemu::validate::validate(d, caps.as_ref().map(QemuCaps::supports_failover));
    add(&mut c.diagnostics, v, path);
    let Some(caps) = caps else { return c };
    if c.diagnostics.iter().any(Diagnostic::is_error) {
        // libvirt stops at the first error; placement means nothing yet.
        return c;
    }
    let mut dom = d.clone();
    if let Err(e) = teamvirt_qemu::defaults::define(&mut dom, &caps) {
        // libvirt's own define-time error (its text) for this QEMU.
        let diag = Diagnostic::error("qemu-define", e.to_string());
        add(&mut c.diagnostics, vec![diag], path);
        return c;
    }
    let (actual, problems) = resolve_for_checks(&dom, &qemu.networks);
    let mut found = Vec::new();
    for (i, e) in problems {
        let pos = dom.devices.interfaces[i].pos;
        let d = if start_errors_fatal {
            Diagnostic::error(START_ERROR, e.to_string())
        } else {
            Diagnostic::warning(
                START_ERROR,
                e.to_string(),
                "libvirt defines this domain but refuses to start it with this error",
            )
        };
        found.push(d.at(pos));
    }
    found.extend(teamvirt_qemu::topology::check(&dom, &actual));
    found.extend(standby_segment_warnings(&dom, &qemu.networks));
    add(&mut c.diagnostics, found, path);
    c.topology_checked = true;
    c.defined = Some(dom);
    c
}

/// A device document (`attach-device` input) checked as libvirt checks a
/// device it attaches: parsed as inside `<devices>`, then its generic and
/// QEMU-driver checks and teamvirt's teaming checks, in a domain of its
/// own (x86_64). What only the running domain can tell is left to
/// `attach-device`: whether the standby a primary names is there.
fn check_device(dev: &DeviceDef, qemu: &mut QemuSide) -> Vec<Diagnostic> {
    const HOST: &str = "<domain type='kvm'><name>device</name><memory>1048576</memory>\
                        <os><type arch='x86_64'>hvm</type></os></domain>";
    let Ok((mut dom, _)) = DomainDef::parse_str(HOST, None) else {
        return Vec::new();
    };
    match dev.clone() {
        DeviceDef::Interface(i) => dom.devices.interfaces.push(i),
        DeviceDef::Hostdev(h) => dom.devices.hostdevs.push(h),
    }
    let caps = qemu.caps_for(&dom);
    teamvirt_qemu::validate::validate(&dom, caps.as_ref().map(QemuCaps::supports_failover))
        .into_iter()
        .filter(|d| d.code != "teaming-dangling-persistent")
        .collect()
}

/// A failover standby on a network that is not its VF's L2 segment (nat,
/// route, open, isolated): during a migration its traffic goes elsewhere;
/// `start` refuses it.
fn standby_segment_warnings(dom: &DomainDef, nets: &NetworkMap) -> Vec<Diagnostic> {
    use teamvirt_conf::model::{InterfaceType, TeamingType};
    use teamvirt_qemu::resolve::NetworkSource;
    let mut out = Vec::new();
    for n in &dom.devices.interfaces {
        if n.type_ != InterfaceType::Network || n.teaming_type() != Some(TeamingType::Persistent) {
            continue;
        }
        let name = n.source_network().unwrap_or_default();
        let Ok(Some((nd, _))) = nets.lookup(name) else {
            continue;
        };
        if let Some(mode) = teamvirt_runtime::netsetup::other_segment_mode(&nd) {
            out.push(
                Diagnostic::warning(
                    "teaming-standby-segment",
                    format!(
                        "failover standby {} is on network '{name}' (forward mode '{mode}'), not on its VF's L2 segment: while the VF is unplugged (migration) the guest's traffic goes to a different network",
                        n.mac.as_ref().map(|m| m.address.to_string()).unwrap_or_default()
                    ),
                    "put the standby on a bridge over the VF's PF (<forward mode='bridge'/> or <interface type='bridge'>); teamvirt start refuses this",
                )
                .at(n.pos),
            );
        }
    }
    out
}

/// Read, schema-check (when asked) and parse; on failure, the finished
/// [`Checked`].
fn parse(path: &Path, schema: bool) -> Result<(AnyDef, Vec<Diagnostic>, String), Box<Checked>> {
    let failed = |def: Option<AnyDef>, diagnostics: Vec<Diagnostic>, text: Option<String>| {
        Box::new(Checked {
            def,
            diagnostics,
            text,
            topology_checked: false,
            defined: None,
        })
    };
    let text = match teamvirt_conf::read_xml_file(path) {
        Ok(t) => t,
        Err(e) => return Err(failed(None, vec![e.to_diagnostic(Some(path))], None)),
    };
    let schema_errors = if schema {
        match teamvirt_conf::schema::check_str(&text, Some(path)) {
            Ok(d) => d,
            Err(e) => return Err(failed(None, vec![e.to_diagnostic(Some(path))], Some(text))),
        }
    } else {
        Vec::new()
    };
    let parsed = AnyDef::parse_str(&text, Some(path));
    if !schema_errors.is_empty() {
        let (def, warnings) = match parsed {
            Ok((def, w)) => (Some(def), w),
            Err(_) => (None, Vec::new()),
        };
        // The parser's note that it keeps an unknown element is the same
        // finding as the schema error on that line.
        let lines: Vec<u32> = schema_errors
            .iter()
            .filter_map(|d| d.pos.map(|p| p.line))
            .collect();
        let mut diags = schema_errors;
        diags.extend(warnings.into_iter().filter(|w| {
            !(w.code.starts_with("unknown-") && w.pos.is_some_and(|p| lines.contains(&p.line)))
        }));
        return Err(failed(def, diags, Some(text)));
    }
    match parsed {
        Ok((def, diags)) => Ok((def, diags, text)),
        Err(e) => Err(failed(None, vec![e.to_diagnostic(Some(path))], Some(text))),
    }
}

/// Merge `more` (file set to `path`) into `diags`: errors first, then
/// warnings, each in document order.
fn add(diags: &mut Vec<Diagnostic>, more: Vec<Diagnostic>, path: &Path) {
    diags.extend(
        more.into_iter()
            .map(|d| d.with_file(Some(path.to_path_buf()))),
    );
    diags.sort_by_key(|d| (!d.is_error(), d.pos));
}

pub fn run(args: Args) -> ExitCode {
    let mut qemu = match QemuSide::new(&args.qemu) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut all_valid = true;
    let mut reports = Vec::new();
    for f in &args.files {
        let c = check_all(f, &mut qemu, true, true);
        all_valid &= c.valid();
        if args.json {
            let mut r = render::file_json(f, c.def.as_ref().map(AnyDef::kind), &c.diagnostics);
            r["topology_checked"] = c.topology_checked.into();
            reports.push(r);
        } else {
            for d in &c.diagnostics {
                eprint!("{}", render::render(d, c.text.as_deref()));
            }
            let errors = c.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = c.diagnostics.len() - errors;
            let status = if c.valid() { "valid" } else { "invalid" };
            eprintln!(
                "{}: {status} ({errors} error(s), {warnings} warning(s))",
                f.display()
            );
        }
    }
    if args.json {
        let v = serde_json::json!({ "valid": all_valid, "files": reports, "notes": qemu.notes });
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for n in &qemu.notes {
            eprintln!("note: {n}");
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
