//! Domain lifecycle verbs, virsh-style: `define`, `undefine`, `list`,
//! `dumpxml`, `start`, `destroy`, `shutdown`, `domstate`, `teaming`.
//! All work on a state directory (`--state-dir`, `TEAMVIRT_STATE_DIR`, or
//! the default) through `teamvirt_runtime::Runtime`.

use crate::out::{out, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use teamvirt_runtime::start::describe_substitution;
use teamvirt_runtime::teaming::PairState;
use teamvirt_runtime::RuntimeError;

use super::args::{LaunchArgs, NameArgs, StateOpt};
use super::report::{report, report_domain};
use crate::render::render;

fn read_file(path: &Path) -> Result<String, ExitCode> {
    teamvirt_conf::read_xml_file(path).map_err(|e| {
        eprintln!("error: Failed to read file '{}'", path.display());
        eprint!("{}", render(&e.to_diagnostic(Some(path)), None));
        ExitCode::FAILURE
    })
}

#[derive(clap::Args, Debug)]
pub struct DefineArgs {
    /// Domain XML file.
    pub file: PathBuf,
    /// Check the XML against libvirt's RELAX NG schema first (virsh's
    /// --validate, as virt-xml-validate); without it define is as lenient
    /// as libvirt's (unknown elements are kept, with a warning).
    #[arg(long)]
    pub validate: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// `--validate`: `text` against libvirt's schema for `kind`. On failure
/// the errors are printed under `what` and the exit code returned.
pub fn schema_check(
    what: &str,
    text: &str,
    file: &Path,
    kind: teamvirt_conf::schema::SchemaKind,
) -> Result<(), ExitCode> {
    let diags = match teamvirt_conf::schema::check_str_as(text, kind, Some(file)) {
        Ok(d) => d,
        Err(e) => vec![e.to_diagnostic(Some(file))],
    };
    if diags.is_empty() {
        return Ok(());
    }
    eprintln!("error: {what}");
    for d in &diags {
        eprint!("{}", render(d, Some(text)));
    }
    Err(ExitCode::FAILURE)
}

pub fn define(a: DefineArgs) -> ExitCode {
    let text = match read_file(&a.file) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let what = format!("Failed to define domain from {}", a.file.display());
    if a.validate {
        let kind = teamvirt_conf::schema::SchemaKind::Domain;
        if let Err(c) = schema_check(&what, &text, &a.file, kind) {
            return c;
        }
    }
    let res = a
        .state
        .open()
        .and_then(|rt| crate::block_on(rt.define_domain(&text, Some(&a.file))));
    match res {
        Ok((name, warnings)) => {
            for w in &warnings {
                let w = w.clone().with_file(Some(a.file.clone()));
                eprint!("{}", render(&w, Some(&text)));
            }
            outln!("Domain '{name}' defined from {}", a.file.display());
            ExitCode::SUCCESS
        }
        Err(e) => report(&what, &e),
    }
}

pub fn undefine(a: NameArgs) -> ExitCode {
    match a.state.open().and_then(|rt| rt.undefine_domain(&a.domain)) {
        Ok(()) => {
            outln!("Domain '{}' has been undefined", a.domain);
            ExitCode::SUCCESS
        }
        Err(e) => report_domain(
            &a.domain,
            &format!("Failed to undefine domain '{}'", a.domain),
            &e,
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Active and inactive domains (default: active ones only, as virsh).
    #[arg(long)]
    pub all: bool,
    /// Inactive (shut off, defined) domains only.
    #[arg(long, conflicts_with = "all")]
    pub inactive: bool,
    /// Running domains only (with --all or --inactive: among those).
    #[arg(long)]
    pub state_running: bool,
    /// Paused domains only.
    #[arg(long)]
    pub state_paused: bool,
    /// Shut-off domains only.
    #[arg(long)]
    pub state_shutoff: bool,
    /// Print names only, one per line (with --uuid: UUID and name).
    #[arg(long, conflicts_with = "json")]
    pub name: bool,
    /// Print UUIDs only, one per line.
    #[arg(long, conflicts_with = "json")]
    pub uuid: bool,
    /// Print JSON instead of text: the rows selected, with id, name,
    /// uuid, state.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// Which domains `list` shows, virsh's way: `--all` active and inactive,
/// `--inactive` inactive only, else active only; a `--state-*` filter
/// given alone picks among all domains (`list --state-shutoff` lists the
/// shut-off ones, as virsh does).
fn list_selects(a: &ListArgs, d: &teamvirt_runtime::DomainSummary) -> bool {
    use teamvirt_runtime::DomainState as S;
    let active = d.state != S::ShutOff;
    let states = a.state_running || a.state_paused || a.state_shutoff;
    let by_activity = if a.all || (states && !a.inactive) {
        true
    } else if a.inactive {
        !active
    } else {
        active
    };
    let by_state = !states
        || (a.state_running && matches!(d.state, S::Running | S::Busy | S::NotResponding))
        || (a.state_paused && d.state == S::Paused)
        || (a.state_shutoff && d.state == S::ShutOff);
    by_activity && by_state
}

pub fn list(a: ListArgs) -> ExitCode {
    let doms = match a
        .state
        .open_existing()
        .and_then(|rt| rt.map_or(Ok(vec![]), |rt| crate::block_on(rt.list_domains(true))))
    {
        Ok(d) => d,
        Err(e) => return report("Failed to list domains", &e),
    };
    let doms: Vec<_> = doms.into_iter().filter(|d| list_selects(&a, d)).collect();
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&doms).expect("serializes")
        );
    } else if a.name || a.uuid {
        // virsh: one per line, then an empty line.
        for d in &doms {
            let uuid = d.uuid.as_deref().unwrap_or("");
            match (a.uuid, a.name) {
                // virsh's "%-36s %-30s\n".
                (true, true) => outln!("{uuid:<36} {:<30}", d.name),
                (true, false) => outln!("{uuid}"),
                _ => outln!("{}", d.name),
            }
        }
        outln!();
    } else {
        let w = doms.iter().map(|d| d.name.len()).max().unwrap_or(4).max(4);
        outln!(" {:<4} {:<w$}   State", "Id", "Name");
        outln!("{}", "-".repeat(w + 18));
        for d in &doms {
            let id = d.id.map_or("-".to_string(), |i| i.to_string());
            outln!(" {id:<4} {:<w$}   {}", d.name, d.state);
        }
        outln!();
    }
    // The rows above say which; here is why (the others are listed fine).
    for d in &doms {
        if let Some(p) = &d.problem {
            eprintln!("warning: {p}");
        }
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug)]
pub struct DumpxmlArgs {
    /// Domain name.
    pub domain: String,
    /// The defined configuration instead of the running one.
    #[arg(long)]
    pub inactive: bool,
    /// Include security-sensitive information (the VNC `passwd`), as
    /// virsh's `--security-info`.
    #[arg(long)]
    pub security_info: bool,
    /// XML for a migration: the live XML without its runtime-only parts
    /// (domain id, teamvirt's runtime metadata, tap names; pool VFs as the
    /// network interfaces they were defined as).
    #[arg(long, conflicts_with = "inactive")]
    pub migratable: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn dumpxml(a: DumpxmlArgs) -> ExitCode {
    match a.state.read_domain(&a.domain, |rt| {
        if a.migratable {
            rt.domain_xml_migratable(&a.domain)
        } else {
            rt.domain_xml(&a.domain, a.inactive)
        }
    }) {
        Ok(x) => {
            let x = if a.security_info {
                x
            } else {
                teamvirt_qemu::vncauth::hide_passwords(&x)
            };
            out!("{x}");
            ExitCode::SUCCESS
        }
        Err(e) => report_domain(
            &a.domain,
            &format!("Failed to get XML of domain '{}'", a.domain),
            &e,
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Domain name.
    pub domain: String,
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// Attach to the serial console once started (as `console`; Ctrl-]
    /// leaves, the domain keeps running).
    #[arg(long)]
    pub console: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

fn print_pairs(states: &[PairState]) {
    for s in states {
        let p = &s.pair;
        eprintln!(
            "failover: standby {} / primary {}: negotiated={} plugged={}{}",
            p.standby,
            p.primary,
            yes_no(s.negotiated),
            yes_no(s.plugged),
            p.vf.as_deref()
                .map(|v| format!(" vf={v}"))
                .unwrap_or_default()
        );
    }
}

pub fn start(a: StartArgs) -> ExitCode {
    let opts = a.launch.options();
    let what = format!("Failed to start domain '{}'", a.domain);
    let rt = match a.state.open() {
        Ok(rt) => rt,
        Err(e) => return report(&what, &e),
    };
    match crate::block_on(rt.start(&a.domain, &opts)) {
        Ok(r) => {
            print_start_report(&r);
            outln!("Domain '{}' started", a.domain);
            if a.console {
                return crate::cmd::console::attach(&rt, &a.domain);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_start_failure(&e);
            if let RuntimeError::AlreadyRunning(_) = e {
                // virsh checks before asking the driver, with this text.
                eprintln!("error: Domain is already active");
                return ExitCode::FAILURE;
            }
            report_domain(&a.domain, &what, &e)
        }
    }
}

/// What a start did besides starting: notes, warnings, lab-mode
/// substitutions, the pairs' failover state (stderr).
pub fn print_start_report(r: &teamvirt_runtime::StartReport) {
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    for w in &r.warnings {
        eprint!("{}", render(w, None));
    }
    for s in &r.substitutions {
        eprintln!("{}", describe_substitution(s));
    }
    if let Some(states) = &r.teaming {
        print_pairs(states);
    }
    super::agent::print_check_lines(&r.guest);
}

/// The pairs of a start whose failover wait failed, before its error.
pub fn print_start_failure(e: &RuntimeError) {
    if let RuntimeError::FailoverNotNegotiated {
        states,
        substitutions,
        ..
    } = e
    {
        for s in substitutions {
            eprintln!("{s}");
        }
        print_pairs(states);
    }
}

#[derive(clap::Args, Debug)]
pub struct DestroyArgs {
    /// Domain name.
    pub domain: String,
    /// Also when the domain's state is damaged: find its QEMU by what the
    /// kernel says (executable, command line naming the domain's monitor
    /// socket) rather than by its run record, stop it and clean up.
    #[arg(long)]
    pub force: bool,
    /// Only ask QEMU to exit (SIGTERM) and wait up to 10 s, never kill it
    /// (virsh --graceful): when it does not exit, this fails and the
    /// domain keeps running.
    #[arg(long, conflicts_with = "force")]
    pub graceful: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn destroy(a: DestroyArgs) -> ExitCode {
    let mut on_wait = |m: &str| eprintln!("{m}");
    match a.state.open().and_then(|rt| {
        if a.graceful {
            rt.destroy_graceful(&a.domain, &mut on_wait)
        } else {
            rt.destroy_with(&a.domain, a.force, &mut on_wait)
        }
    }) {
        Ok(freed) => {
            for v in &freed {
                eprintln!(
                    "VF {} ({}) returned to network '{}'",
                    v.address, v.device, v.network
                );
            }
            outln!("Domain '{}' destroyed", a.domain);
            ExitCode::SUCCESS
        }
        Err(e) => report_domain(
            &a.domain,
            &format!("Failed to destroy domain '{}'", a.domain),
            &e,
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct DomstateArgs {
    /// Domain name.
    pub domain: String,
    /// Also say why, in virsh's words: `running (booted)`, `paused (user)`,
    /// `shut off (destroyed)`.
    #[arg(long)]
    pub reason: bool,
    /// Print JSON instead of text: `state`, and `reason` with --reason.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn domstate(a: DomstateArgs) -> ExitCode {
    match a.state.read_domain(&a.domain, |rt| {
        crate::block_on(rt.domain_state_reason(&a.domain))
    }) {
        Ok((s, why)) => {
            if a.json {
                let mut v = serde_json::json!({ "domain": a.domain, "state": s.to_string() });
                if a.reason {
                    v["reason"] = why.into();
                }
                outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
            } else if a.reason {
                // virsh: the state, the reason in parentheses, an empty
                // line. One pair of parentheses for scripts to parse: a
                // running QEMU whose monitor is busy or silent is running,
                // the detail goes to stderr.
                use teamvirt_runtime::DomainState as S;
                if matches!(s, S::Busy | S::NotResponding) {
                    eprintln!("note: domain '{}' is {s}", a.domain);
                    outln!("running ({why})\n");
                } else {
                    outln!("{s} ({why})\n");
                }
            } else {
                outln!("{s}\n");
            }
            ExitCode::SUCCESS
        }
        Err(e) => report_domain(
            &a.domain,
            &format!("failed to get state of domain '{}'", a.domain),
            &e,
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct TeamingArgs {
    /// Domain name.
    pub domain: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Plug back every primary the guest removed (same alias, address and
    /// VF), then wait up to SECONDS (default 60) for the pairs to negotiate.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true, default_missing_value = "60")]
    pub replug: Option<u64>,
    /// Leave the guest's side out (no guest agent query).
    #[arg(long)]
    pub no_guest: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `teaming DOMAIN`: per pair, standby and primary ids, whether the guest
/// negotiated failover (the primary exists in QEMU: it is hidden until the
/// guest acks VIRTIO_NET_F_STANDBY), whether the primary is plugged into
/// the guest's PCI bus, and the VF it uses.
pub fn teaming(a: TeamingArgs) -> ExitCode {
    let got = a.state.open().and_then(|rt| {
        let states = match a.replug {
            Some(secs) => crate::block_on(rt.replug(&a.domain, Duration::from_secs(secs)))?,
            None => crate::block_on(rt.teaming(&a.domain))?,
        };
        // The guest's side: a domain without an agent says so, an agent
        // that does not answer is a note, neither fails the verb.
        let pairs: Vec<_> = states.iter().map(|s| s.pair.clone()).collect();
        let (guest, reboot) = if a.no_guest {
            (None, Vec::new())
        } else {
            let (v, lines) = rt.guest_view(&a.domain, &pairs)?;
            (Some(v), lines)
        };
        Ok((states, guest, reboot))
    });
    let (states, guest, reboot) = match got {
        Ok(s) => s,
        Err(e) => {
            return report_domain(
                &a.domain,
                &format!("Failed to get teaming state of domain '{}'", a.domain),
                &e,
            )
        }
    };
    if !reboot.is_empty() {
        eprintln!(
            "note: the guest rebooted since the guest doctor last saw it (its boot id changed); what the doctor finds is in the domain log too"
        );
        super::agent::print_check_lines(&reboot);
    }
    if a.json {
        let mut v = serde_json::json!({ "domain": a.domain, "pairs": states });
        if let Some(g) = &guest {
            v["guest"] = serde_json::to_value(g).expect("serializes");
        }
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return ExitCode::SUCCESS;
    }
    if states.is_empty() {
        outln!("Domain '{}' has no teaming pairs", a.domain);
        return ExitCode::SUCCESS;
    }
    let ws = states
        .iter()
        .map(|s| s.pair.standby.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let wp = states
        .iter()
        .map(|s| s.pair.primary.len())
        .max()
        .unwrap_or(7)
        .max(7);
    outln!(
        " {:<ws$}  {:<wp$}  Negotiated  Plugged  MAC match  VF",
        "Standby",
        "Primary"
    );
    outln!("{}", "-".repeat(ws + wp + 50));
    for s in &states {
        let p = &s.pair;
        let mut vf = p.vf.clone().unwrap_or_else(|| "-".into());
        if p.emulated {
            vf.push_str(&format!(
                " (lab mode: emulated {})",
                teamvirt_qemu::command::LAB_PRIMARY_MODEL
            ));
        }
        if let Some(n) = &p.network {
            vf.push_str(&format!(" from network '{n}'"));
        }
        outln!(
            " {:<ws$}  {:<wp$}  {:<10}  {:<7}  {:<9}  {vf}",
            p.standby,
            p.primary,
            yes_no(s.negotiated),
            yes_no(s.plugged),
            yes_no(s.mac_match)
        );
    }
    for s in &states {
        if let Some(why) = s.problem() {
            eprintln!("note: {why}");
        }
    }
    if let Some(g) = &guest {
        super::agent::print_guest_view(g);
    }
    ExitCode::SUCCESS
}
