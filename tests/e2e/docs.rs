//! Checks that what the docs state about the code still holds: the crate map in `docs/architecture.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Crate → the workspace crates it depends on, as a sorted map of sorted sets.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The workspace's own dependency graph, from `cargo metadata`: every dependency that is
/// not a dev-dependency, kept when it names another workspace crate.
fn cargo_graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = workspace_root().join("Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages.iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap();
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|d| *d != name && names.contains(*d))
                .map(str::to_owned)
                .collect();
            (name.to_owned(), deps)
        })
        .collect()
}

/// The graph `docs/architecture.md` states in its "Dependency arrows" section, one line per
/// crate: "- `a` depends on `b`, `c`" or "- `a` depends on no workspace crate".
fn parse_doc_graph(doc: &str) -> Graph {
    let section = doc.split("### Dependency arrows").nth(1).expect("the doc has a Dependency arrows section");
    let section = section.split("\n### ").next().unwrap();
    let mut graph = Graph::new();
    for line in section.lines().filter_map(|l| l.strip_prefix("- `")) {
        let (name, rest) = line.split_once("` depends on ").unwrap_or_else(|| panic!("unparsable line: - `{line}"));
        let deps = if rest.trim() == "no workspace crate" {
            BTreeSet::new()
        } else {
            rest.split(", ")
                .map(|d| d.trim().strip_prefix('`').and_then(|d| d.strip_suffix('`')))
                .map(|d| d.unwrap_or_else(|| panic!("a dependency not in backticks in: - `{line}")).to_owned())
                .collect()
        };
        assert!(graph.insert(name.to_owned(), deps).is_none(), "{name} is listed twice");
    }
    graph
}

#[test]
fn the_dependency_list_matches_cargo_metadata() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/architecture.md")).unwrap();
    let stated = parse_doc_graph(&doc);
    let actual = cargo_graph();
    let mut drift = Vec::new();
    for name in stated.keys().chain(actual.keys()).collect::<BTreeSet<_>>() {
        match (stated.get(name), actual.get(name)) {
            (Some(s), Some(a)) if s == a => {}
            (Some(s), Some(a)) => drift.push(format!("{name}: the doc says {s:?}, Cargo.toml says {a:?}")),
            (Some(_), None) => drift.push(format!("{name}: in the doc, but not a workspace crate")),
            (None, Some(a)) => drift.push(format!("{name}: a workspace crate missing from the doc (depends on {a:?})")),
            (None, None) => unreachable!(),
        }
    }
    assert!(drift.is_empty(), "docs/architecture.md's Dependency arrows drifted from the code:\n{}", drift.join("\n"));
}

#[test]
fn the_dependency_list_parser_reads_each_form_and_refuses_others() {
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    /// A crate and the crates it depends on.
    type Line = (&'static str, &'static [&'static str]);
    let cases: &[(&str, &[Line])] = &[
        // (section body, the graph it states)
        ("- `a` depends on no workspace crate\n", &[("a", &[])]),
        ("- `b` depends on `a`\n- `c` depends on `a`, `b`\n", &[("b", &["a"]), ("c", &["a", "b"])]),
        ("Prose first.\n\n- `a` depends on no workspace crate\n\nProse after.\n", &[("a", &[])]),
    ];
    for (body, want) in cases {
        let doc = format!("# X\n\n### Dependency arrows\n\n{body}\n### Next\n\n- `z` depends on `y`\n");
        let want: Graph = want.iter().map(|(n, d)| (n.to_string(), set(d))).collect();
        assert_eq!(parse_doc_graph(&doc), want, "{body:?}");
    }
    let bad = "### Dependency arrows\n\n- `a` needs `b`\n";
    assert!(std::panic::catch_unwind(|| parse_doc_graph(bad)).is_err(), "an unparsable line is refused");
}
