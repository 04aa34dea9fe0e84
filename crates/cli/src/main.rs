//! `teamvirt`: the thin binary. Each verb lives in its own module under
//! `cmd/`; this file only wires clap to them.
// Issue 20's guard rails, here until every crate of the workspace meets
// them (then `[workspace.lints]`); the threshold is in clippy.toml.
#![warn(clippy::too_many_lines, clippy::unwrap_used)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;
mod out;
mod render;
mod trace;

#[derive(Parser)]
#[command(
    name = "teamvirt",
    version,
    about = "libvirt-compatible NIC teaming (virtio-net failover) for QEMU"
)]
struct Cli {
    /// State directory (default: $TEAMVIRT_STATE_DIR, /var/lib/teamvirt for
    /// root, else $XDG_STATE_HOME/teamvirt). Accepted before or after the verb.
    // Global: clap copies the value into every verb's `StateOpt` (same id),
    // whichever side of the verb it was given on.
    #[arg(long, value_name = "DIR", global = true)]
    state_dir: Option<std::path::PathBuf>,
    /// Trace what teamvirt does on stderr: QMP commands, replies and events
    /// (secrets redacted), QEMU command lines, sysfs writes, link
    /// operations, lock waits. `TEAMVIRT_LOG` (EnvFilter syntax, e.g.
    /// `teamvirt_qmp=debug`) chooses finer.
    #[arg(long, global = true)]
    debug: bool,
    /// User (and group) QEMU runs as when teamvirt runs as root (default:
    /// $TEAMVIRT_QEMU_USER, else `teamvirt-qemu`, created if missing).
    /// `root` keeps uid 0, still without capabilities. Also +UID[:+GID].
    #[arg(long, value_name = "USER[:GROUP]", global = true)]
    qemu_user: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each helper adds its verbs here, one variant per verb, args in cmd/<verb>.rs.
    /// Show what a QEMU binary can do: version, machines, accelerators, failover.
    Capabilities(cmd::capabilities::Args),
    /// Print the QEMU command line libvirt would build for a domain.
    DomxmlToNative(cmd::domxml_to_native::Args),
    /// Check domain, network or network-port XML (libvirt's checks + teaming checks).
    Validate(cmd::validate::Args),
    /// Print canonical XML (what `virsh define` + `dumpxml --inactive` prints).
    Format(cmd::format::Args),
    /// Define (or update) a domain from XML.
    Define(cmd::domain::DefineArgs),
    /// Forget a domain's definition.
    Undefine(cmd::args::NameArgs),
    /// List domains.
    List(cmd::domain::ListArgs),
    /// Print a domain's XML (live when running).
    Dumpxml(cmd::domain::DumpxmlArgs),
    /// Start a defined domain (QEMU runs detached).
    Start(cmd::domain::StartArgs),
    /// Start a domain from XML without defining it (transient, as virsh
    /// create: forgotten once it stops).
    Create(cmd::create::CreateArgs),
    /// Stop a domain now (its VFs go back to their pools).
    Destroy(cmd::domain::DestroyArgs),
    /// Ask a domain's guest to power off (ACPI power button) and return at
    /// once, like virsh. A guest without an ACPI handler ignores it: use destroy.
    /// With `--mode agent`, the QEMU guest agent shuts the guest down.
    Shutdown(cmd::agent::ShutdownArgs),
    /// Print a domain's state.
    Domstate(cmd::domain::DomstateArgs),
    /// Print a running domain's id (`-` when shut off).
    Domid(cmd::host::DomLookupArgs),
    /// Print a domain's UUID.
    Domuuid(cmd::host::DomLookupArgs),
    /// Print the name of the domain with this id or UUID.
    Domname(cmd::host::DomLookupArgs),
    /// Print teamvirt's version and the default emulator's QEMU version.
    Version(cmd::host::JsonArgs),
    /// Print the URI of the state directory in use (`teamvirt:///system`
    /// for /var/lib/teamvirt, else `teamvirt://` + its path).
    Uri(cmd::host::JsonArgs),
    /// Print this host's name.
    Hostname(cmd::host::JsonArgs),
    /// Print this host's CPU and memory (from /proc), as virsh nodeinfo.
    Nodeinfo(cmd::host::JsonArgs),
    /// List the host's PCI and network devices (libvirt's node device names).
    NodedevList(cmd::nodedev::ListArgs),
    /// Print a host device's XML (libvirt's node device format; a PF's
    /// virt_functions, a VF's phys_function).
    NodedevDumpxml(cmd::nodedev::DevArgs),
    /// Bind a PCI device to vfio-pci (refused while a domain holds it).
    NodedevDetach(cmd::nodedev::DetachArgs),
    /// Give a PCI device back to its host driver (refused while a domain
    /// holds it).
    NodedevReattach(cmd::nodedev::DetachArgs),
    /// Show the failover state of a running domain's teaming pairs and,
    /// with a guest agent, the guest's side of each (the guest doctor).
    Teaming(cmd::domain::TeamingArgs),
    /// Print domain events as they happen (lifecycle, reboot, failover),
    /// in virsh's words; --loop until Ctrl-C or --timeout.
    Event(cmd::event::EventArgs),
    /// Define (or update) a network from XML.
    NetDefine(cmd::net::NetDefineArgs),
    /// Forget a network's definition.
    NetUndefine(cmd::net::NetNameArgs),
    /// List networks (VF pools with their use).
    NetList(cmd::net::NetListArgs),
    /// Print a network's XML.
    NetDumpxml(cmd::net::NetDumpxmlArgs),
    /// Show a network's name, UUID, state, autostart and bridge (virsh's layout).
    NetInfo(cmd::netinfo::NetInfoArgs),
    /// Print a network's UUID.
    NetUuid(cmd::netinfo::NetInfoArgs),
    /// Start (activate) a network: checks its bridge or PF exists.
    NetStart(cmd::net::NetNameArgs),
    /// Stop a network from serving new devices (running domains keep theirs).
    NetDestroy(cmd::net::NetNameArgs),
    /// Live-migrate a running domain to another host over SSH or to another state directory (unplug, migrate, replug).
    Migrate(cmd::migrate::MigrateArgs),
    /// Show the running job (migration) of a domain.
    Domjobinfo(cmd::domjobinfo::DomjobinfoArgs),
    /// Abort the running job (migration) of a domain; it rolls back.
    Domjobabort(cmd::domjobabort::DomjobabortArgs),
    /// Show a domain's basic information (and where its log is).
    Dominfo(cmd::control::InfoArgs),
    /// List a domain's network interfaces with their teaming role and pair.
    Domiflist(cmd::control::InfoArgs),
    /// Print a running domain's interface counters (rx/tx bytes, packets,
    /// errors, drops), as the guest sees them, from the host-side device.
    Domifstat(cmd::domif::DomifstatArgs),
    /// Print a running domain's interface addresses (virsh's table):
    /// --source arp from the host's neighbour table.
    Domifaddr(cmd::domif::DomifaddrArgs),
    /// Pause a running domain's vCPUs.
    Suspend(cmd::args::NameArgs),
    /// Resume a paused domain.
    Resume(cmd::args::NameArgs),
    /// Reboot a domain (a machine reset: no daemon catches the guest's ACPI
    /// power-off; the guest negotiates failover again as it boots).
    Reboot(cmd::args::NameArgs),
    /// Start a domain when the host boots (`start-autostart`, run by the
    /// systemd unit), or stop doing so with --disable.
    Autostart(cmd::control::AutostartArgs),
    /// Mark a network for autostart (checked by `start-autostart`).
    NetAutostart(cmd::control::AutostartArgs),
    /// Bring back networks and domains marked autostart (at boot).
    StartAutostart(cmd::control::StartAutostartArgs),
    /// Attach to a domain's serial console (a pty); Ctrl-] leaves.
    Console(cmd::args::NameArgs),
    /// Edit a domain's definition in $EDITOR; saved only if it validates.
    Edit(cmd::edit::EditArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(cmd::docs::CompletionsArgs),
    /// Write man pages: teamvirt.1 and one teamvirt-VERB.1 per verb.
    Man(cmd::docs::ManArgs),
    /// Hot-plug a NIC (teaming standby or primary) or PCI hostdev from XML.
    AttachDevice(cmd::hotplug::AttachArgs),
    /// Hot-unplug the NIC (by MAC) or hostdev (by host address) an XML names.
    DetachDevice(cmd::hotplug::DetachArgs),
    /// Hot-unplug the device with this alias.
    DetachDeviceAlias(cmd::hotplug::DetachAliasArgs),
    /// Names for shell completion (internal: the bash script calls it).
    #[command(name = "__complete-names", hide = true)]
    CompleteNames(cmd::docs::CompleteNamesArgs),
    /// The destination half of `migrate URI`, started over SSH (internal).
    #[command(name = "__migrate-dest", hide = true)]
    MigrateDest(cmd::migrate_dest::Args),
}

/// Drive `f` to completion on the runtime `main` built: the verbs' one way
/// into the libraries' async API (lifecycle verbs, migration, the probe).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match teamvirt_host::asyncrt::handle() {
        Ok(h) => h.block_on(f),
        // main installs it before any verb runs.
        Err(e) => panic!("{e}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    trace::init(cli.debug);
    // The process's one async runtime: the verbs drive the libraries'
    // async API on it ([`block_on`]); netlink finds it through
    // teamvirt_host::asyncrt.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: internal error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    teamvirt_host::asyncrt::install(rt.handle().clone());
    if let Some(u) = &cli.qemu_user {
        teamvirt_host::privdrop::set_qemu_user(u);
    }
    // Every probe of an emulator runs it as the QEMU user, unprivileged.
    teamvirt_runtime::jail::install_probe_jail();
    let code = match cli.command {
        Command::Capabilities(args) => cmd::capabilities::run(args),
        Command::DomxmlToNative(args) => cmd::domxml_to_native::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Format(args) => cmd::format::run(args),
        Command::Define(a) => cmd::domain::define(a),
        Command::Undefine(a) => cmd::domain::undefine(a),
        Command::List(a) => cmd::domain::list(a),
        Command::Dumpxml(a) => cmd::domain::dumpxml(a),
        Command::Start(a) => cmd::domain::start(a),
        Command::Create(a) => cmd::create::run(a),
        Command::Destroy(a) => cmd::domain::destroy(a),
        Command::Shutdown(a) => cmd::agent::shutdown(a),
        Command::Domstate(a) => cmd::domain::domstate(a),
        Command::Teaming(a) => cmd::domain::teaming(a),
        Command::Event(a) => cmd::event::run(a),
        Command::Domid(a) => cmd::host::domid(a),
        Command::Domuuid(a) => cmd::host::domuuid(a),
        Command::Domname(a) => cmd::host::domname(a),
        Command::Version(a) => cmd::host::version(a),
        Command::Uri(a) => cmd::host::uri(a),
        Command::Hostname(a) => cmd::host::hostname(a),
        Command::Nodeinfo(a) => cmd::host::nodeinfo(a),
        Command::NodedevList(a) => cmd::nodedev::list(a),
        Command::NodedevDumpxml(a) => cmd::nodedev::dumpxml(a),
        Command::NodedevDetach(a) => cmd::nodedev::detach(a),
        Command::NodedevReattach(a) => cmd::nodedev::reattach(a),
        Command::NetDefine(a) => cmd::net::define(a),
        Command::NetUndefine(a) => cmd::net::undefine(a),
        Command::NetList(a) => cmd::net::list(a),
        Command::NetDumpxml(a) => cmd::net::dumpxml(a),
        Command::NetInfo(a) => cmd::netinfo::net_info(a),
        Command::NetUuid(a) => cmd::netinfo::net_uuid(a),
        Command::NetStart(a) => cmd::net::start(a),
        Command::NetDestroy(a) => cmd::net::destroy(a),
        Command::Migrate(a) => cmd::migrate::run(a),
        Command::Domjobinfo(a) => cmd::domjobinfo::run(a),
        Command::Domjobabort(a) => cmd::domjobabort::run(a),
        Command::Dominfo(a) => cmd::control::dominfo(a),
        Command::Domiflist(a) => cmd::control::domiflist(a),
        Command::Domifstat(a) => cmd::domif::domifstat(a),
        Command::Domifaddr(a) => cmd::domif::domifaddr(a),
        Command::Suspend(a) => cmd::control::suspend(a),
        Command::Resume(a) => cmd::control::resume(a),
        Command::Reboot(a) => cmd::control::reboot(a),
        Command::Autostart(a) => {
            cmd::control::autostart(a, teamvirt_runtime::control::AutostartKind::Domain)
        }
        Command::NetAutostart(a) => {
            cmd::control::autostart(a, teamvirt_runtime::control::AutostartKind::Network)
        }
        Command::StartAutostart(a) => cmd::control::start_autostart(a),
        Command::Console(a) => cmd::console::run(a),
        Command::Edit(a) => cmd::edit::run(a),
        Command::Completions(a) => cmd::docs::completions(a, Cli::command()),
        Command::Man(a) => cmd::docs::man(a, Cli::command()),
        Command::AttachDevice(a) => cmd::hotplug::attach(a),
        Command::DetachDevice(a) => cmd::hotplug::detach(a),
        Command::DetachDeviceAlias(a) => cmd::hotplug::detach_alias(a),
        Command::MigrateDest(a) => cmd::migrate_dest::run(a),
        Command::CompleteNames(a) => cmd::docs::complete_names(a),
    };
    // tokio's stdin reader (`__migrate-dest`) may sit in a read(2) that
    // never returns: do not wait for it.
    rt.shutdown_background();
    if out::failed() {
        return ExitCode::FAILURE;
    }
    code
}
