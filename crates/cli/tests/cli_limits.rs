//! Hostile XML through the binary (issue 12): deep nesting, a vCPU count
//! past the machine's limit, control characters in quoted source lines.
//! Every verb that reads XML must exit 1 with a clear message, never abort.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

fn teamvirt(args: &[&str], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(args)
        .env("TEAMVIRT_STATE_DIR", state)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The 37 KB, 12,400-deep document of the issue (a domain or a network).
fn deep(root: &str, depth: usize) -> String {
    let head = match root {
        "domain" => "<domain type='kvm'><name>deep</name><memory>1024</memory><devices>",
        _ => "<network><name>deep</name>",
    };
    let tail = match root {
        "domain" => "</devices></domain>",
        _ => "</network>",
    };
    format!(
        "{head}\n{}{}{tail}\n",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    )
}

#[test]
fn deep_nesting_is_an_error_in_every_verb() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dom = dir.path().join("deep.xml");
    let net = dir.path().join("deep-net.xml");
    std::fs::write(&dom, deep("domain", 12_400)).unwrap();
    std::fs::write(&net, deep("network", 12_400)).unwrap();
    let (dom, net) = (dom.to_str().unwrap(), net.to_str().unwrap());
    let runs: Vec<(Vec<&str>, &str)> = vec![
        (vec!["validate", dom], dom),
        (vec!["validate", "--json", dom], dom),
        (vec!["format", dom], dom),
        (vec!["define", dom], dom),
        (vec!["domxml-to-native", dom], dom),
        (vec!["validate", net], net),
        (vec!["net-define", net], net),
    ];
    for (args, file) in runs {
        let o = teamvirt(&args, &state);
        assert_eq!(
            o.status.signal(),
            None,
            "{args:?} died of a signal: {}",
            stderr(&o)
        );
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
        assert!(
            all.contains("XML error: document nesting too deep (more than 256 levels"),
            "{args:?}: {all}"
        );
        // Line 2, column of the 256th <a> (the root is level 1, <devices>
        // or <name>'s parent level 2 for the domain).
        if !args.contains(&"--json") {
            assert!(all.contains(&format!("{file}:2:")), "{args:?}: {all}");
            // The quoted line is cut around the column, not 50 KB long.
            assert!(all.len() < 4_000, "{args:?}: {} bytes", all.len());
        }
    }
}

/// A 39 KB `--caps` file nested 5,500 deep overflowed the stack of
/// every verb that takes `--caps` (issue 17): it gets domain XML's limits.
#[test]
fn deep_caps_file_is_an_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let caps = dir.path().join("deep-caps.xml");
    let depth = 5_500;
    std::fs::write(
        &caps,
        format!(
            "<qemuCaps>\n{}{}</qemuCaps>\n",
            "<a>".repeat(depth),
            "</a>".repeat(depth)
        ),
    )
    .unwrap();
    let dom = dir.path().join("d.xml");
    std::fs::write(
        &dom,
        "<domain type='kvm'><name>d</name><memory>1024</memory><os><type>hvm</type></os></domain>",
    )
    .unwrap();
    let (caps, dom) = (caps.to_str().unwrap(), dom.to_str().unwrap());
    for args in [
        vec!["capabilities", "--caps", caps],
        vec!["validate", "--caps", caps, dom],
        vec!["format", dom, "--caps", caps],
        vec!["domxml-to-native", dom, "--caps", caps],
    ] {
        let o = teamvirt(&args, &state);
        assert_eq!(
            o.status.signal(),
            None,
            "{args:?} died of a signal: {}",
            stderr(&o)
        );
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        // The root is level 1: the 256th <a> is the first too deep, on
        // line 2 at column 3 * 255 + 1.
        assert!(
            stderr(&o).contains(&format!(
                "{caps}:2:766: XML error: document nesting too deep (more than 256 levels"
            )),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn nesting_just_within_the_limit_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let dom = dir.path().join("ok.xml");
    // <domain>, <metadata>, then 254 levels: 256 in all.
    let xml = format!(
        "<domain type='kvm'><name>ok</name><memory>1024</memory><os><type>hvm</type></os><metadata>{}{}</metadata></domain>",
        "<a>".repeat(254),
        "</a>".repeat(254)
    );
    std::fs::write(&dom, xml).unwrap();
    let o = teamvirt(
        &["format", dom.to_str().unwrap()],
        &dir.path().join("state"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // Kept verbatim, indented at most 60 columns like libxml2.
    assert_eq!(out.matches("<a>").count(), 253, "{out}");
    assert!(out.lines().all(|l| l.len() - l.trim_start().len() <= 60));
}

#[test]
fn control_characters_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let dom = dir.path().join("esc.xml");
    // An unknown teaming type with an escape sequence that would clear the
    // screen, and a CR that would move the cursor.
    std::fs::write(
        &dom,
        "<domain type='kvm'><name>esc</name><memory>1024</memory><os><type>hvm</type></os><devices>\n\
         <interface type='user'>\r<teaming type='\u{1b}[2J\u{1b}[H'/></interface></devices></domain>\n",
    )
    .unwrap();
    let o = teamvirt(
        &["validate", dom.to_str().unwrap()],
        &dir.path().join("state"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters in {err:?}"
    );
    // XML forbids the raw ESC: the parser says so, pointing at it.
    assert!(
        err.contains("XML error: a non-XML character '\\u{1b}' found"),
        "{err}"
    );
    assert!(err.contains("\\x1b[2J"), "{err}");
    // The marker is under the escaped ESC on the quoted line, past the
    // escaped CR.
    let lines: Vec<&str> = err.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("2 | "))
        .unwrap_or_else(|| panic!("{err}"));
    let col = lines[i + 1].find('^').unwrap();
    assert!(lines[i][..col].contains("\\r<teaming type='"), "{err}");
    assert_eq!(&lines[i][col..col + 7], "\\x1b[2J", "{err}");
}

#[test]
fn vcpus_over_the_machine_limit_refused_by_validate() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("vcpus_over_the_machine_limit") else {
        return;
    };
    let caps = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let dir = tempfile::tempdir().unwrap();
    let dom = dir.path().join("cpus.xml");
    let xml = |n: u32| {
        format!(
            "<domain type='kvm'><name>c</name><memory>1048576</memory><vcpu>{n}</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"
        )
    };
    // The most libvirt's schema allows (an unsignedShort): validate checks
    // the schema first.
    std::fs::write(&dom, xml(65_535)).unwrap();
    let run = || {
        teamvirt(
            &[
                "validate",
                "--caps",
                caps.to_str().unwrap(),
                dom.to_str().unwrap(),
            ],
            &dir.path().join("state"),
        )
    };
    let o = run();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "unsupported configuration: Maximum CPUs greater than specified machine type limit 255"
        ),
        "{}",
        stderr(&o)
    );
    std::fs::write(&dom, xml(255)).unwrap();
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
