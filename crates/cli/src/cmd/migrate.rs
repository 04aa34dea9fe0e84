//! `teamvirt migrate DOMAIN URI` (another host over SSH) or `teamvirt
//! migrate DOMAIN --dest-state-dir DIR` (another state directory here):
//! live migration with the phases shown as they happen: a progress bar on
//! a terminal, plain lines otherwise, one JSON object per event with
//! `--json`.

use crate::out::outln;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use teamvirt_host::state::StateDir;
use teamvirt_runtime::migrate::{self, MigrateError, MigrateOptions, Outcome, Progress};

use super::args::{StateOpt, MAX_WAIT_SECS};
use crate::render::render;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Domain name.
    pub domain: String,
    // clap's --help text, not rustdoc: escaping brackets would print the backslashes.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Destination host: ssh://[user@]host[:port][/STATE-DIR] or
    /// qemu+ssh://[user@]host[:port]/system, with libvirt's keyfile=,
    /// known_hosts= and no_verify=1 parameters.
    #[arg(
        value_name = "URI",
        required_unless_present = "dest_state_dir",
        conflicts_with = "dest_state_dir"
    )]
    pub uri: Option<String>,
    /// Destination: another teamvirt state directory on this host (its own
    /// networks and VF pools), reached over TCP on loopback.
    #[arg(long, value_name = "DIR")]
    pub dest_state_dir: Option<PathBuf>,
    /// The teamvirt binary on the destination host.
    #[arg(long, value_name = "PATH", default_value = "teamvirt")]
    pub remote_teamvirt: String,
    // clap's --help text, not rustdoc: escaping brackets would print the backslashes.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Where the source QEMU sends the memory (tcp://ADDR[:PORT]); default:
    /// the address the SSH connection reached.
    #[arg(long, value_name = "URI")]
    pub migrateuri: Option<String>,
    /// Address the destination QEMU listens on.
    #[arg(long, value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Carry the memory stream inside SSH (only sshd needs to be reachable).
    #[arg(long, conflicts_with_all = ["migrateuri", "listen_address", "tls"])]
    pub tunnelled: bool,
    /// Encrypt the memory stream with TLS (QEMU tls-creds-x509), as virsh --tls.
    #[arg(long)]
    pub tls: bool,
    /// Certificate directory on both hosts (ca-cert.pem, server-cert.pem,
    /// server-key.pem, client-cert.pem, client-key.pem).
    #[arg(long, value_name = "DIR", requires = "tls", default_value = teamvirt_runtime::migrate::remote::DEFAULT_TLS_DIR)]
    pub tls_dir: PathBuf,
    /// Cancel and roll back when the guest has not unplugged its primaries
    /// this many seconds after the start.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=MAX_WAIT_SECS))]
    pub unplug_timeout: u64,
    /// Pause the source when the copy has not converged after SECS (virsh
    /// --timeout; only once the primaries are unplugged).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_WAIT_SECS))]
    pub timeout: Option<u64>,
    /// Bandwidth cap in MiB/s (virsh --bandwidth).
    // QEMU takes bytes/s as a signed 64-bit value.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=(i64::MAX as u64 >> 20)))]
    pub bandwidth: Option<u64>,
    /// Define the domain on the destination.
    #[arg(long)]
    pub persistent: bool,
    /// Undefine the domain on the source once migrated.
    #[arg(long)]
    pub undefinesource: bool,
    /// Print JSON instead of text: one object per event, a line each.
    #[arg(long)]
    pub json: bool,
    /// Accepted for virsh scripts: teamvirt's migration is always live.
    #[arg(long)]
    pub live: bool,
    /// Accepted for virsh scripts: teamvirt drives both sides itself (as
    /// libvirt's peer-to-peer migration does).
    #[arg(long)]
    pub p2p: bool,
    /// Accepted for virsh scripts: progress is always shown on stderr.
    #[arg(long)]
    pub verbose: bool,
    /// Refused: post-copy would run the guest on the destination before
    /// its memory arrived (see `unsupported_flag`).
    #[arg(long)]
    pub postcopy: bool,
    /// Refused (see `unsupported_flag`).
    #[arg(long)]
    pub auto_converge: bool,
    /// Refused (see `unsupported_flag`).
    #[arg(long)]
    pub compressed: bool,
    /// Refused (see `unsupported_flag`).
    #[arg(long)]
    pub parallel: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// virsh migrate flags teamvirt takes but does not implement: the first
/// one given, with why, for a clear refusal instead of a silent no-op.
pub fn unsupported_flag(a: &MigrateArgs) -> Option<(&'static str, &'static str)> {
    [
        (
            a.postcopy,
            "--postcopy",
            "post-copy would resume the guest on the destination before its memory arrived, \
             while its failover primaries are unplugged; a failed post-copy loses the guest",
        ),
        (
            a.auto_converge,
            "--auto-converge",
            "CPU throttling is not driven by teamvirt; use --timeout to pause the source \
             when the copy does not converge",
        ),
        (
            a.compressed,
            "--compressed",
            "migration compression is not configured by teamvirt",
        ),
        (
            a.parallel,
            "--parallel",
            "multifd (parallel connections) is not configured by teamvirt",
        ),
    ]
    .into_iter()
    .find(|(on, _, _)| *on)
    .map(|(_, flag, why)| (flag, why))
}

/// How progress is shown.
enum View {
    Json,
    /// On a terminal: an `indicatif` bar under the event lines.
    Bar {
        bar: indicatif::ProgressBar,
    },
    Plain {
        last_stats: Option<Instant>,
    },
}

impl View {
    fn bar() -> View {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("[{bar:24}] {msg}")
                .expect("static template")
                .progress_chars("#>-"),
        );
        View::Bar { bar }
    }

    fn clear_bar(&mut self) {
        if let View::Bar { bar } = self {
            bar.finish_and_clear();
        }
    }

    fn line(&mut self, s: &str) {
        match self {
            // Printed above the bar, which stays drawn below.
            View::Bar { bar } => bar.suspend(|| eprintln!("{s}")),
            _ => eprintln!("{s}"),
        }
    }

    fn show(&mut self, p: &Progress) {
        if let View::Json = self {
            outln!("{}", serde_json::to_string(p).unwrap_or_default());
            let _ = std::io::stdout().flush();
            return;
        }
        match p {
            Progress::Warning { message } => self.line(&format!("warning: {message}")),
            Progress::Info { message } => self.line(&format!("         {message}")),
            Progress::Phase { phase, elapsed_ms } => {
                self.line(&format!("{:>8} phase {phase}", secs(*elapsed_ms)))
            }
            Progress::Qemu {
                side,
                name,
                data,
                elapsed_ms,
                ..
            } => {
                // Status changes are shown as phases; passes are noise.
                if name == "MIGRATION" || name == "MIGRATION_PASS" {
                    return;
                }
                let side = match side {
                    migrate::driver::Side::Source => "source",
                    migrate::driver::Side::Destination => "destination",
                };
                let detail = data
                    .get("device-id")
                    .or_else(|| data.get("device"))
                    .and_then(|v| v.as_str())
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default();
                self.line(&format!("{:>8} {side}: {name}{detail}", secs(*elapsed_ms)));
            }
            Progress::Rollback { step, elapsed_ms } => {
                self.line(&format!("{:>8} rollback: {step}", secs(*elapsed_ms)))
            }
            Progress::Stats {
                phase,
                elapsed_ms,
                data_processed,
                data_remaining,
                data_total,
                ..
            } => {
                let figures = format!(
                    "{:>8} {phase:<11} sent {} remaining {}",
                    secs(*elapsed_ms),
                    mib(*data_processed),
                    mib(*data_remaining)
                );
                match self {
                    View::Bar { bar } => {
                        // Sent out of what will be sent (zero pages are
                        // skipped, so the guest's RAM size overstates it).
                        let total = match (data_processed, data_remaining, data_total) {
                            (Some(p), Some(r), _) => Some(p + r),
                            (_, None, Some(t)) => Some(*t),
                            _ => None,
                        };
                        if let Some(t) = total.filter(|t| *t > 0) {
                            bar.set_length(t);
                            bar.set_position(data_processed.unwrap_or(0).min(t));
                        }
                        bar.set_message(figures);
                    }
                    View::Plain { last_stats } => {
                        if last_stats.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                            eprintln!("{figures}");
                            *last_stats = Some(Instant::now());
                        }
                    }
                    View::Json => {}
                }
            }
        }
    }
}

fn secs(ms: u64) -> String {
    format!("{:.3}s", ms as f64 / 1000.0)
}

fn mib(b: Option<u64>) -> String {
    b.map_or_else(
        || "-".into(),
        |b| format!("{:.1} MiB", b as f64 / 1048576.0),
    )
}

pub fn run(a: MigrateArgs) -> ExitCode {
    if let Some((flag, why)) = unsupported_flag(&a) {
        eprintln!("error: unsupported flag {flag}: {why}");
        return ExitCode::FAILURE;
    }
    let sd = match a.state.state_dir.as_deref().map_or_else(
        || teamvirt_runtime::state_root::open_default(None),
        StateDir::open,
    ) {
        Ok(sd) => sd,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = MigrateOptions {
        unplug_timeout: Duration::from_secs(a.unplug_timeout),
        timeout: a.timeout.map(Duration::from_secs),
        bandwidth_mib: a.bandwidth,
        persistent: a.persistent,
        undefine_source: a.undefinesource,
        tls_dir: a.tls.then(|| a.tls_dir.clone()),
        ..Default::default()
    };
    let mut view = if a.json {
        View::Json
    } else if std::io::stderr().is_terminal() {
        View::bar()
    } else {
        View::Plain { last_stats: None }
    };
    let res = match (&a.uri, &a.dest_state_dir) {
        (Some(uri), _) => match remote_target(&a, uri) {
            Ok(t) => crate::block_on(migrate::migrate_to_remote(
                &sd,
                &a.domain,
                migrate::RemoteDestination::new(t),
                &opts,
                &mut |p| view.show(&p),
            )),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, Some(dir)) => {
            if a.migrateuri.is_some() || a.listen_address.is_some() || a.tunnelled {
                eprintln!("error: invalid argument: --migrateuri, --listen-address and --tunnelled need a destination host URI");
                return ExitCode::FAILURE;
            }
            crate::block_on(migrate::migrate_to_state_dir(
                &sd,
                &a.domain,
                dir,
                &opts,
                &mut |p| view.show(&p),
            ))
        }
        (None, None) => unreachable!("clap requires one"),
    };
    view.clear_bar();
    match res {
        Ok(out) => {
            super::agent::print_check_lines(&out.guest);
            summary(&a, &out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            failure(&a, &e);
            ExitCode::FAILURE
        }
    }
}

fn remote_target(a: &MigrateArgs, uri: &str) -> Result<migrate::RemoteTarget, String> {
    use migrate::remote::{parse_migrateuri, SshUri};
    if !SshUri::is_remote(uri) {
        return Err(format!("invalid argument: '{uri}' is not a destination URI (ssh://[user@]host[:port][/STATE-DIR] or qemu+ssh://host/system); another state directory of this host is --dest-state-dir DIR"));
    }
    let uri = SshUri::parse(uri).map_err(|e| e.to_string())?;
    let (migrate_addr, migrate_port) = match &a.migrateuri {
        Some(m) => {
            let (h, p) = parse_migrateuri(m).map_err(|e| e.to_string())?;
            (Some(h), p)
        }
        None => (None, 0),
    };
    Ok(migrate::RemoteTarget {
        uri,
        remote_teamvirt: a.remote_teamvirt.clone(),
        migrate_addr,
        migrate_port,
        listen_address: a.listen_address.clone(),
        tunnelled: a.tunnelled,
        tls_dir: a.tls.then(|| a.tls_dir.clone()),
    })
}

fn destination(a: &MigrateArgs) -> String {
    match (&a.uri, &a.dest_state_dir) {
        (Some(u), _) => migrate::remote::SshUri::parse(u)
            .map(|u| u.display())
            .unwrap_or_else(|_| u.clone()),
        (None, Some(d)) => d.display().to_string(),
        (None, None) => String::new(),
    }
}

fn summary(a: &MigrateArgs, out: &Outcome) {
    if a.json {
        outln!("{}", json!({"event": "result", "ok": true, "outcome": out}));
        return;
    }
    let j = &out.job;
    let ms = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| format!("{v} ms"));
    outln!(
        "Migration of domain '{}' to {} completed in {} (wait-unplug {}, downtime {}, {} sent)",
        a.domain,
        destination(a),
        secs(j.elapsed_ms),
        ms(j.wait_unplug_ms),
        ms(j.downtime_ms),
        mib(j.data_processed)
    );
    for s in &out.destination_pairs {
        outln!(
            "  pair {} / {}: negotiated {}, plugged {}{}",
            s.pair.standby,
            s.pair.primary,
            if s.negotiated { "yes" } else { "no" },
            if s.plugged { "yes" } else { "no" },
            s.pair
                .vf
                .as_ref()
                .map(|v| format!(", VF {v}"))
                .unwrap_or_default()
        );
    }
    for v in &out.released_source_vfs {
        outln!(
            "  source VF {} returned to network '{}'",
            v.address,
            v.network
        );
    }
    outln!(
        "  destination: {}{}",
        if out.destination_running {
            "running"
        } else {
            "paused"
        },
        if out.defined_on_destination {
            ", defined"
        } else {
            ", transient"
        }
    );
    if out.undefined_on_source {
        outln!("  source definition removed");
    }
}

fn failure(a: &MigrateArgs, e: &MigrateError) {
    if a.json {
        let mut v =
            json!({"event": "result", "ok": false, "error": e.to_string(), "code": e.code()});
        match e {
            MigrateError::Failed {
                rollback,
                primaries_back,
                ..
            } => {
                v["rollback"] = json!(rollback);
                v["primaries_back"] = json!(primaries_back);
            }
            MigrateError::Unsupported(diags) => {
                v["diagnostics"] = json!(diags
                    .iter()
                    .map(|d| json!({"message": d.message, "location": d.location()}))
                    .collect::<Vec<_>>());
            }
            _ => {}
        }
        outln!("{v}");
    }
    eprintln!("error: Failed to migrate domain '{}'", a.domain);
    match e {
        MigrateError::Unsupported(diags) => {
            for d in diags {
                let text = d
                    .file
                    .as_ref()
                    .and_then(|f| std::fs::read_to_string(f).ok());
                eprint!("{}", render(d, text.as_deref()));
            }
        }
        MigrateError::Failed {
            rollback,
            primaries_back,
            ..
        } => {
            eprintln!("error: {e}");
            if !a.json {
                eprintln!("rollback:");
                for r in rollback {
                    eprintln!("  - {r}");
                }
            }
            if !primaries_back {
                eprintln!("warning: not every primary is back on the source (see above)");
            }
        }
        _ => eprintln!("error: {e}"),
    }
}
