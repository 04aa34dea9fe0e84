//! Errors reported the way virsh does, shared by every verb.

use std::process::ExitCode;

use teamvirt_runtime::RuntimeError;

use crate::render::render;

/// Print an error the way virsh does (`error: what failed` + `error: why`),
/// with diagnostics rendered against their XML.
pub fn report(what: &str, e: &RuntimeError) -> ExitCode {
    eprintln!("error: {what}");
    match e {
        RuntimeError::Invalid { diags, text, file } => {
            for d in diags {
                let d = d.clone().with_file(d.file.clone().or_else(|| file.clone()));
                eprint!("{}", render(&d, Some(text)));
            }
        }
        RuntimeError::Refused {
            name,
            diags,
            text,
            file,
        } => {
            eprintln!("error: {}", teamvirt_runtime::error::refusal_header(name));
            for d in diags {
                let d = d.clone().with_file(d.file.clone().or_else(|| file.clone()));
                eprint!("{}", render(&d, Some(text)));
            }
        }
        _ => eprintln!("error: {e}"),
    }
    ExitCode::FAILURE
}

/// virsh looks the domain up before acting on it: a missing one is
/// `failed to get domain 'X'` (then libvirt's "Domain not found" text).
pub fn report_domain(dom: &str, what: &str, e: &RuntimeError) -> ExitCode {
    match e {
        RuntimeError::NoDomain(n) if n == dom => {
            report(&format!("failed to get domain '{dom}'"), e)
        }
        _ => report(what, e),
    }
}

/// The network counterpart of [`report_domain`].
pub fn report_network(net: &str, what: &str, e: &RuntimeError) -> ExitCode {
    match e {
        RuntimeError::NoNetwork(n) if n == net => {
            report(&format!("failed to get network '{net}'"), e)
        }
        _ => report(what, e),
    }
}
