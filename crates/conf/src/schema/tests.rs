use super::vocab::{allowed, closest, distance};
use super::*;

const DOMAIN: &str = "<domain type='kvm'>\n  <name>d</name>\n  <memory>1048576</memory>\n  \
<os><type arch='x86_64' machine='q35'>hvm</type></os>\n  <devices>\n    \
<interface type='network'>\n      <source network='lan'/>\n      \
<model type='virtio'/>\n      <teaming type='persistent'/>\n    </interface>\n  \
</devices>\n</domain>\n";

fn check(text: &str) -> Vec<Diagnostic> {
    check_str(text, Some(Path::new("d.xml"))).unwrap()
}

#[test]
fn a_valid_domain_has_no_schema_errors() {
    assert_eq!(check(DOMAIN), vec![]);
}

#[test]
fn misspelt_element_is_refused_with_position_and_hint() {
    let d = check(&DOMAIN.replace("<teaming", "<teamng"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Did not expect element teamng there"
    );
    assert_eq!(d[0].location().unwrap(), "d.xml:9:7");
    assert_eq!(d[0].hint.as_deref(), Some("did you mean 'teaming'?"));
}

#[test]
fn misspelt_attribute_points_at_the_attribute() {
    let d = check(&DOMAIN.replace("<model type", "<model typ"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Invalid attribute typ for element model"
    );
    assert_eq!(d[0].pos, Some(Pos::new(8, 14)));
    assert_eq!(d[0].hint.as_deref(), Some("did you mean 'type'?"));
}

#[test]
fn misspelt_value_gets_the_allowed_one() {
    let d = check(&DOMAIN.replace("'persistent'", "'persistant'"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Element teaming failed to validate \
         attributes: type='persistant' is not allowed"
    );
    assert_eq!(d[0].hint.as_deref(), Some("did you mean 'persistent'?"));
}

#[test]
fn missing_required_child_is_named() {
    let d = check(&DOMAIN.replace("<name>d</name>", ""));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Expecting an element name, got nothing"
    );
    assert_eq!(d[0].hint.as_deref(), Some("<domain> needs <name>"));
    assert_eq!(d[0].pos, Some(Pos::new(1, 1)));
}

#[test]
fn missing_required_attribute_is_named() {
    let d = check(&DOMAIN.replace("<teaming type='persistent'/>", "<teaming/>"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Element teaming failed to validate attributes"
    );
    assert_eq!(
        d[0].hint.as_deref(),
        Some("<teaming> needs the attribute(s) type")
    );
}

#[test]
fn missing_content_of_one_variant_only() {
    // transient needs persistent=, persistent does not: no name is
    // required by every variant, so the general text.
    let d = check(&DOMAIN.replace("type='persistent'/>", "type='transient'/>"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Element teaming failed to validate content"
    );
}

#[test]
fn required_names_follow_refs_and_choices() {
    let r = allowed(SchemaKind::Domain, "domain")
        .unwrap()
        .required
        .as_ref()
        .unwrap();
    assert!(r.children.contains("name"), "{r:?}");
    assert!(!r.children.contains("devices"), "{r:?}");
    assert!(r.attributes.contains("type"), "{r:?}");
    let t = allowed(SchemaKind::Domain, "teaming")
        .unwrap()
        .required
        .as_ref()
        .unwrap();
    assert_eq!(t.attributes.iter().collect::<Vec<_>>(), ["type"]);
}

#[test]
fn text_where_none_is_allowed() {
    let d = check(&DOMAIN.replace("<devices>", "<devices>stray"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message.ends_with(
            "Element devices failed to validate content: text 'stray' is not allowed there"
        ),
        "{d:?}"
    );
}

#[test]
fn value_out_of_the_datatype() {
    // vcpu is an unsignedShort in libvirt's schema.
    let d = check(&DOMAIN.replace("<memory>", "<vcpu>4294967295</vcpu><memory>"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Element vcpu failed to validate content: \
         text '4294967295' is not allowed there"
    );
    assert!(check(&DOMAIN.replace("<memory>", "<vcpu>65535</vcpu><memory>")).is_empty());
    let long = "9".repeat(100);
    let d = check(&DOMAIN.replace("<memory>", &format!("<vcpu>{long}</vcpu><memory>")));
    assert!(
        d[0].message.contains(&format!("'{}...'", &long[..40])),
        "{d:?}"
    );
}

#[test]
fn device_documents_use_their_definition() {
    let nic = "<interface type='network'><source network='lan'/><model type='virtio'/></interface>";
    assert_eq!(check(nic), vec![]);
    let d = check(&nic.replace("<model", "<mdoel"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].hint.as_deref(), Some("did you mean 'model'?"));
    let hostdev = "<hostdev mode='subsystem' type='pci' managed='yes'><source>\
                   <address domain='0x0000' bus='0x06' slot='0x12' function='0x2'/></source></hostdev>";
    assert_eq!(check(hostdev), vec![]);
    let d = check(&hostdev.replace("managed=", "manged="));
    assert_eq!(
        d[0].hint.as_deref(),
        Some("did you mean 'managed'?"),
        "{d:?}"
    );
}

#[test]
fn define_validate_refuses_another_root() {
    let net = "<network><name>n</name></network>";
    assert_eq!(
        check_str_as(net, SchemaKind::Network, None).unwrap(),
        vec![]
    );
    let d = check_str_as(net, SchemaKind::Domain, None).unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message
            .ends_with("Did not expect element network there"),
        "{d:?}"
    );
}

#[test]
fn unknown_root_has_no_schema() {
    let d = check("<domian/>");
    assert_eq!(d[0].code, "schema-root");
    assert_eq!(d[0].pos, Some(Pos::new(1, 1)));
}

#[test]
fn loader_limits_still_apply() {
    let dtd = "<!DOCTYPE domain [<!ENTITY x 'y'>]><domain/>";
    assert!(check_str(dtd, None).is_err());
}

#[test]
fn errors_are_capped() {
    let many: String = (0..MAX_ERRORS + 7).map(|_| "<bogus/>").collect();
    let d = check(&DOMAIN.replace("<devices>", &format!("<devices>{many}")));
    assert_eq!(d.len(), MAX_ERRORS + 1);
    assert!(
        d[MAX_ERRORS].message.ends_with("7 more error(s) not shown"),
        "{d:?}"
    );
}

#[test]
fn every_grammar_compiles() {
    for k in SchemaKind::ALL {
        assert!(compiled(k).is_ok(), "{k:?}: {:?}", compiled(k).err());
    }
}

#[test]
fn vocab_knows_interface_children_and_values() {
    let a = allowed(SchemaKind::Domain, "interface").unwrap();
    assert!(a.children.contains("teaming") && a.children.contains("model"));
    assert!(a.attributes.contains("type"));
    let t = allowed(SchemaKind::Domain, "teaming").unwrap();
    assert!(t.values["type"].contains("persistent") && t.values["type"].contains("transient"));
}

#[test]
fn distance_counts_swaps_as_one() {
    assert_eq!(distance("mdoel", "model"), 1);
    assert_eq!(distance("teamng", "teaming"), 1);
    assert_eq!(distance("", "abc"), 3);
    assert_eq!(distance("kitten", "sitting"), 3);
}

#[test]
fn closest_needs_a_near_name() {
    let known: Vec<String> = ["model", "mac", "teaming"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(closest("mdoel", &known), Some("model"));
    assert_eq!(closest("xyz", &known), None);
    assert_eq!(closest("model", &known), None);
    assert_eq!(closest("Model", &known), Some("model"));
    assert_eq!(closest(&"m".repeat(1000), &known), None);
}

mod prop {
    use super::super::vocab::distance;
    use proptest::prelude::*;

    proptest! {
        // Each case validates a whole domain in a debug build.
        #![proptest_config(ProptestConfig::with_cases(48))]

        // A metric's basic laws, and the bounds any edit distance has.
        #[test]
        fn distance_laws(a in "[a-e]{0,8}", b in "[a-e]{0,8}") {
            let d = distance(&a, &b);
            prop_assert_eq!(d, distance(&b, &a));
            prop_assert_eq!(d == 0, a == b);
            prop_assert!(d <= a.len().max(b.len()));
            prop_assert!(d >= a.len().abs_diff(b.len()));
        }

        // An element the schema does not know, wherever it is added, is
        // exactly one error naming it.
        #[test]
        fn unknown_child_is_always_reported(name in "x[a-z]{2,10}", at in 0usize..3) {
            let parents = ["<devices>", "<interface type='network'>", "<os>"];
            let p = parents[at];
            let text = super::DOMAIN.replacen(p, &format!("{p}<{name}/>"), 1);
            let d = super::check(&text);
            prop_assert_eq!(d.len(), 1);
            prop_assert_eq!(d[0].code, "schema-element");
            let expected = format!("Did not expect element {name} there");
            prop_assert!(d[0].message.ends_with(&expected));
        }
    }
}
