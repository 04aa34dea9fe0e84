//! `completions SHELL` and `man [--dir DIR]`: generated from the clap
//! definition of the CLI itself, so they can never disagree with it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Command;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs, mut cmd: Command) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "teamvirt", &mut out);
    crate::out::out!("{}", String::from_utf8_lossy(&out));
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

fn write_pages(dir: &std::path::Path, cmd: Command) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    let mut n = 0;
    let mut page = |c: Command, file: String| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        std::fs::write(dir.join(file), buf)?;
        n += 1;
        Ok(())
    };
    page(cmd.clone(), "teamvirt.1".into())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("teamvirt-{}", sub.get_name());
        page(sub.clone().name(name.clone()), format!("{name}.1"))?;
    }
    Ok(n)
}
