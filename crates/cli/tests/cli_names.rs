//! Names that would lie on a terminal are refused at define: C0/C1 control
//! characters and bidirectional overrides (`vm\u{202e}exe.txt` shows as
//! `vmtxt.exe` in `list`); the refusal prints the name escaped.

mod common;

use common::Env;

fn domain(name: &str) -> String {
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"
    )
}

#[test]
fn names_with_bidi_overrides_or_controls_are_refused_at_define() {
    let e = Env::new();
    for (name, shown) in [
        ("vm\u{202e}txt.exe", "vm\\u{202e}txt.exe"),
        ("vm\u{2067}x", "vm\\u{2067}x"),
        ("vm&#x9b;x", "vm\\x9bx"),
        ("vm&#x7f;x", "vm\\x7fx"),
    ] {
        let xml = e.write("d.xml", &domain(name));
        let err = e.fail(&["define", &xml]);
        assert!(
            err.contains(&format!("invalid name '{shown}'")) && err.contains("bidirectional"),
            "{name:?}: {err}"
        );
        assert!(
            !err.chars().any(|c| (c.is_control() && c != '\n')
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)),
            "{name:?}: raw in {err:?}"
        );
    }
    let list = e.ok(&["list", "--all", "--name"]);
    assert!(list.trim().is_empty(), "{list}");
}
