//! `teamvirt`: the thin binary. Each verb lives in its own module under
//! `cmd/`; this file only wires clap to them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod out;
mod render;

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
    Undefine(cmd::domain::NameArgs),
    /// List domains.
    List(cmd::domain::ListArgs),
    /// Print a domain's XML (live when running).
    Dumpxml(cmd::domain::DumpxmlArgs),
    /// Start a defined domain (QEMU runs detached).
    Start(cmd::domain::StartArgs),
    /// Stop a domain now (its VFs go back to their pools).
    Destroy(cmd::domain::NameArgs),
    /// Ask a domain's guest to power off (ACPI power button) and return at
    /// once, like virsh. A guest without an ACPI handler ignores it: use destroy.
    Shutdown(cmd::domain::NameArgs),
    /// Print a domain's state.
    Domstate(cmd::domain::NameArgs),
    /// Show the failover state of a running domain's teaming pairs.
    Teaming(cmd::domain::TeamingArgs),
    /// Define (or update) a network from XML.
    NetDefine(cmd::net::NetDefineArgs),
    /// Forget a network's definition.
    NetUndefine(cmd::net::NetNameArgs),
    /// List networks (VF pools with their use).
    NetList(cmd::net::NetListArgs),
    /// Print a network's XML.
    NetDumpxml(cmd::net::NetNameArgs),
    /// Live-migrate a running domain to another host over SSH or to another state directory (unplug, migrate, replug).
    Migrate(cmd::migrate::MigrateArgs),
    /// Show the running job (migration) of a domain.
    Domjobinfo(cmd::domjobinfo::DomjobinfoArgs),
    /// Abort the running job (migration) of a domain; it rolls back.
    Domjobabort(cmd::domjobabort::DomjobabortArgs),
    /// The destination half of `migrate URI`, started over SSH (internal).
    #[command(name = "__migrate-dest", hide = true)]
    MigrateDest(cmd::migrate_dest::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Destroy(a) => cmd::domain::destroy(a),
        Command::Shutdown(a) => cmd::domain::shutdown(a),
        Command::Domstate(a) => cmd::domain::domstate(a),
        Command::Teaming(a) => cmd::domain::teaming(a),
        Command::NetDefine(a) => cmd::net::define(a),
        Command::NetUndefine(a) => cmd::net::undefine(a),
        Command::NetList(a) => cmd::net::list(a),
        Command::NetDumpxml(a) => cmd::net::dumpxml(a),
        Command::Migrate(a) => cmd::migrate::run(a),
        Command::Domjobinfo(a) => cmd::domjobinfo::run(a),
        Command::Domjobabort(a) => cmd::domjobabort::run(a),
        Command::MigrateDest(a) => cmd::migrate_dest::run(a),
    };
    if out::failed() {
        return ExitCode::FAILURE;
    }
    code
}
