//! `teamvirt`: the thin binary. Each verb lives in its own module under
//! `cmd/`; this file only wires clap to them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod render;

#[derive(Parser)]
#[command(name = "teamvirt", version, about = "libvirt-compatible NIC teaming (virtio-net failover) for QEMU")]
struct Cli {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Capabilities(args) => cmd::capabilities::run(args),
        Command::DomxmlToNative(args) => cmd::domxml_to_native::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Format(args) => cmd::format::run(args),
    }
}
