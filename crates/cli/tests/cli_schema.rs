//! `validate` and `define --validate` / `net-define --validate` check
//! documents against libvirt's RELAX NG schemas (issue 19 item 3), as
//! `virt-xml-validate` and `virsh define --validate` do; plain `define`
//! keeps libvirt's leniency.

mod common;

use common::Env;

fn example(name: &str) -> String {
    let p = teamvirt_testinfra::workspace_root()
        .join("examples")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// The issue's typos in the bundled example, each refused by `validate`
/// at the misspelt element with libxml2's text and the name meant.
#[test]
fn validate_refuses_the_issues_typos() {
    let e = Env::new();
    let ex = example("teaming-q35.xml");
    let cases = [
        (
            "<teaming type='persistent'/>",
            "<teamng type='persistent'/>",
            "teamng",
            "teaming",
        ),
        ("interface", "interfce", "interfce", "interface"),
        (
            "<model type='virtio'/>",
            "<mdoel type='virtio'/>",
            "mdoel",
            "model",
        ),
    ];
    for (from, to, bad, meant) in cases {
        let text = ex.replace(from, to);
        let f = e.write(&format!("{bad}.xml"), &text);
        let err = e.fail(&["validate", &f]);
        let line = line_of(&text, &format!("<{bad}"));
        let want = format!(
            "error: XML document failed to validate against schema: Did not expect element {bad} there\n  --> {f}:{line}:"
        );
        assert!(err.contains(&want), "{err}");
        assert!(
            err.contains(&format!("= hint: did you mean '{meant}'?")),
            "{err}"
        );
        assert!(err.contains(": invalid ("), "{err}");
        // The schema error replaces the confusing later ones.
        assert!(!err.contains("rtl8139"), "{err}");
    }
}

#[test]
fn validate_refuses_a_misspelt_attribute_at_the_attribute() {
    let e = Env::new();
    let text = example("teaming-q35.xml").replacen("<model type=", "<model typ=", 1);
    let f = e.write("typ.xml", &text);
    let out = e.run(&["validate", "--json", &f]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v["files"][0]["diagnostics"][0];
    assert_eq!(
        d["message"],
        "XML document failed to validate against schema: Invalid attribute typ for element model"
    );
    assert_eq!(d["code"], "schema-attribute");
    assert_eq!(d["hint"], "did you mean 'type'?");
    let line = line_of(&text, "<model typ=");
    let col = text.lines().nth(line - 1).unwrap().find("typ=").unwrap() + 1;
    assert_eq!(d["line"], line);
    assert_eq!(d["column"], col, "{d}");
}

#[test]
fn every_bundled_example_validates() {
    let e = Env::new();
    let dir = teamvirt_testinfra::workspace_root().join("examples");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|p| p.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let (_, err) = e.ok2(&args);
    assert!(!err.contains("schema"), "{err}");
}

#[test]
fn define_validate_refuses_what_plain_define_keeps() {
    let e = Env::new();
    let text = example("teaming-q35.xml").replace(
        "<teaming type='persistent'/>",
        "<teamng type='persistent'/>",
    );
    let f = e.write("teamng.xml", &text);
    let err = e.fail(&["define", "--validate", &f]);
    assert!(
        err.starts_with(&format!("error: Failed to define domain from {f}\n")),
        "{err}"
    );
    assert!(err.contains("Did not expect element teamng there"), "{err}");
    assert!(err.contains("= hint: did you mean 'teaming'?"), "{err}");
    // Nothing was defined (the state directory was not even created).
    assert!(!e.state.join("domains").exists());

    // A network given to define --validate fails on its root.
    let net = e.write("net.xml", &example("lan-network.xml"));
    let err = e.fail(&["define", "--validate", &net]);
    assert!(
        err.contains("Did not expect element network there"),
        "{err}"
    );

    // Plain define keeps libvirt's leniency: it defines, with a warning.
    if teamvirt_testinfra::qemu_or_skip("define_validate_refuses_what_plain_define_keeps").is_none()
    {
        return;
    }
    let (out, _) = e.ok2(&["define", &f]);
    assert!(out.contains("Domain 'teaming-q35' defined"), "{out}");
}

#[test]
fn net_define_validate() {
    let e = Env::new();
    let text = example("vfpool-network.xml")
        .replace("<forward ", "<froward ")
        .replace("</forward>", "</froward>");
    let f = e.write("froward.xml", &text);
    let err = e.fail(&["net-define", "--validate", &f]);
    assert!(
        err.starts_with(&format!("error: Failed to define network from {f}\n")),
        "{err}"
    );
    assert!(err.contains("= hint: did you mean 'forward'?"), "{err}");
    let good = e.write("vfpool.xml", &example("vfpool-network.xml"));
    let (out, _) = e.ok2(&["net-define", "--validate", &good]);
    assert!(out.contains("vfpool"), "{out}");
}
