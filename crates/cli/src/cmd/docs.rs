//! `completions SHELL` and `man [--dir DIR]`: generated from the clap
//! definition of the CLI itself, so they can never disagree with it.
//!
//! Each verb's page is `teamvirt-VERB(1)` with the SYNOPSIS a user types
//! (`teamvirt VERB [--state-dir DIR] ...`, values named), the global
//! options included, and no DESCRIPTION repeating NAME. The bash script
//! adds completion of domain and network names, read from the state
//! directory the command line names (hidden verb `__complete-names`); which
//! verbs take which kind of name comes from the same definition (a first
//! positional `domain` or `network`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Command};

use crate::cmd::args::StateOpt;
use crate::out::outln;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs, mut cmd: Command) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "teamvirt", &mut out);
    let mut s = String::from_utf8_lossy(&out).into_owned();
    if a.shell == clap_complete::Shell::Bash {
        s.push_str(&bash_names(&cmd));
    }
    crate::out::out!("{s}");
    ExitCode::SUCCESS
}

/// What kind of name a verb's first positional is.
fn name_kind(sub: &Command) -> Option<&'static str> {
    match sub.get_positionals().next()?.get_id().as_str() {
        "domain" => Some("domains"),
        "network" => Some("networks"),
        _ => None,
    }
}

/// The bash wrapper completing domain and network names, around clap's
/// `_teamvirt`.
fn bash_names(cmd: &Command) -> String {
    let mut domains = Vec::new();
    let mut networks = Vec::new();
    let mut valued = std::collections::BTreeSet::new();
    let mut note_valued = |c: &Command| {
        for a in c.get_arguments() {
            let takes = a.get_num_args().is_some_and(|r| r.takes_values())
                && !matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
                && !a.is_require_equals_set();
            if let (Some(l), true) = (a.get_long(), takes && !a.is_positional()) {
                valued.insert(format!("--{l}"));
            }
        }
    };
    note_valued(cmd);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        note_valued(sub);
        match name_kind(sub) {
            Some("domains") => domains.push(sub.get_name().to_owned()),
            Some(_) => networks.push(sub.get_name().to_owned()),
            None => {}
        }
    }
    let valued: Vec<String> = valued.into_iter().collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"
# Domain and network names from the state directory (teamvirt's addition
# to clap's script): the first operand of the verbs below.
_teamvirt_names() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local verb="" npos=0 i w kind="" sd=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        case $w in
            --state-dir) sd=(--state-dir "${{COMP_WORDS[i+1]}}"); ((i++)); continue ;;
            --state-dir=*) sd=("$w"); continue ;;
            {valued}) ((i++)); continue ;;
            -*) continue ;;
        esac
        if [[ -z $verb ]]; then verb=$w; else ((npos++)); fi
    done
    case $verb in
        {domains}) kind=domains ;;
        {networks}) kind=networks ;;
    esac
    case $prev in {valued}) kind="" ;; esac
    if [[ -n $kind && $npos -eq 0 && $cur != -* ]]; then
        COMPREPLY=($(compgen -W "$("${{COMP_WORDS[0]}}" "${{sd[@]}}" __complete-names "$kind" 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _teamvirt "$@"
}}
complete -F _teamvirt_names -o bashdefault -o default teamvirt
"#,
        valued = if valued.is_empty() {
            "--".into()
        } else {
            valued.join("|")
        },
        domains = if domains.is_empty() {
            "-".into()
        } else {
            domains.join("|")
        },
        networks = if networks.is_empty() {
            "-".into()
        } else {
            networks.join("|")
        },
    );
    s
}

#[derive(clap::Args, Debug)]
pub struct CompleteNamesArgs {
    /// `domains` or `networks`.
    #[arg(value_parser = ["domains", "networks"])]
    pub kind: String,
    #[command(flatten)]
    pub state: StateOpt,
}

/// `__complete-names KIND`: the names completion offers, one a line;
/// nothing (and no error) when the state directory cannot be read.
pub fn complete_names(a: CompleteNamesArgs) -> ExitCode {
    let Ok(Some(rt)) = a.state.open_existing() else {
        return ExitCode::SUCCESS;
    };
    let names: Vec<String> = if a.kind == "domains" {
        crate::block_on(rt.list_domains(true))
            .map(|d| d.into_iter().map(|d| d.name).collect())
            .unwrap_or_default()
    } else {
        rt.list_networks()
            .map(|n| n.into_iter().map(|n| n.name).collect())
            .unwrap_or_default()
    };
    for n in names {
        outln!("{n}");
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write `teamvirt.1` and one `teamvirt-VERB.1` per verb
    /// into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

pub fn man(a: ManArgs, cmd: Command) -> ExitCode {
    match write_pages(&a.dir, cmd) {
        Ok(n) => {
            eprintln!("wrote {n} man pages to {}", a.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write man pages to {}: {e}", a.dir.display());
            ExitCode::FAILURE
        }
    }
}

/// roff text: backslashes and hyphens escaped, no line starting a request.
fn roff_escape(s: &str) -> String {
    let e = s.replace('\\', "\\e").replace('-', "\\-");
    if e.starts_with('.') || e.starts_with('\'') {
        format!("\\&{e}")
    } else {
        e
    }
}

/// The SYNOPSIS a user types: `teamvirt VERB`, every option with its
/// value's name (`--state-dir DIR`, `--wait-failover[=SECONDS]`), then the
/// operands.
pub fn synopsis(cmd: &Command, invoked_as: &str) -> String {
    let mut parts = vec![format!("\\fB{}\\fR", roff_escape(invoked_as))];
    let value = |a: &clap::Arg| -> String {
        let names = a
            .get_value_names()
            .map(|v| {
                v.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
        format!("\\fI{}\\fR", roff_escape(&names))
    };
    for a in cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
    {
        let Some(long) = a.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let flag = format!("\\fB\\-\\-{}\\fR", roff_escape(long));
        let takes = a.get_num_args().is_some_and(|r| r.takes_values())
            && !matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let optional_value = a.get_num_args().is_some_and(|r| r.min_values() == 0);
        let text = match (takes, optional_value) {
            (false, _) => flag,
            (true, true) => format!("{flag}[={}]", value(a)),
            (true, false) if a.is_require_equals_set() => format!("{flag}={}", value(a)),
            (true, false) => format!("{flag} {}", value(a)),
        };
        let many = matches!(a.get_action(), ArgAction::Append | ArgAction::Count);
        let text = if many { format!("{text}...") } else { text };
        parts.push(if a.is_required_set() {
            text
        } else {
            format!("[{text}]")
        });
    }
    for a in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let v = value(a);
        let many = a.get_num_args().is_some_and(|r| r.max_values() > 1);
        let v = if many { format!("{v}...") } else { v };
        parts.push(if a.is_required_set() {
            v
        } else {
            format!("[{v}]")
        });
    }
    if cmd.has_subcommands() {
        parts.push("\\fIVERB\\fR".into());
    }
    format!(".SH SYNOPSIS\n{}\n", parts.join(" "))
}

/// One page: clap_mangen's sections, with our SYNOPSIS, and DESCRIPTION
/// only where there is more to say than NAME's line.
fn page(c: Command, invoked_as: &str) -> std::io::Result<Vec<u8>> {
    let about = c.get_about().map(|s| s.to_string());
    let long = c.get_long_about().map(|s| s.to_string());
    let syn = synopsis(&c, invoked_as);
    let man = clap_mangen::Man::new(c.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    buf.extend_from_slice(syn.as_bytes());
    if long.is_some() && long != about {
        man.render_description_section(&mut buf)?;
    }
    if c.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if c.has_subcommands() {
        man.render_subcommands_section(&mut buf)?;
    }
    if c.get_after_long_help().is_some() || c.get_after_help().is_some() {
        man.render_extra_section(&mut buf)?;
    }
    if c.get_version().is_some() {
        man.render_version_section(&mut buf)?;
    }
    Ok(buf)
}

fn write_pages(dir: &std::path::Path, cmd: Command) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    // Propagates the global options (--state-dir, --debug, --qemu-user)
    // into every verb, so each page lists them.
    cmd.build();
    let mut n = 0;
    std::fs::write(dir.join("teamvirt.1"), page(cmd.clone(), "teamvirt")?)?;
    n += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("teamvirt-{}", sub.get_name());
        let c = sub.clone().name(name.clone()).display_name(name.clone());
        let text = page(c, &format!("teamvirt {}", sub.get_name()))?;
        std::fs::write(dir.join(format!("{name}.1")), text)?;
        n += 1;
    }
    Ok(n)
}
