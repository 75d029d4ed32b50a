//! Properties of the source that the compiler does not check: every export
//! runs inside the panic boundary, and code that touches guest memory does
//! so only through the accessors that are sound for memory another party
//! writes concurrently.

use std::path::Path;

fn rust_files(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

/// The text of each `#[no_mangle]` function's body, by name.
fn exports(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, _) in src.match_indices("#[no_mangle]") {
        let rest = &src[at..];
        let name_at = rest.find("fn ").expect("fn after #[no_mangle]") + 3;
        let name: String = rest[name_at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // The body starts at the first `{` after the parameter list.
        let mut depth = 0;
        let mut close = 0;
        for (i, c) in rest[name_at..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = name_at + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let open = close + rest[close..].find('{').unwrap();
        out.push((name, rest[open + 1..].trim_start().to_owned()));
    }
    out
}

#[test]
fn every_export_runs_inside_the_panic_boundary() {
    let mut count = 0;
    let mut outside = Vec::new();
    for (path, src) in rust_files("src") {
        for (name, body) in exports(&src) {
            count += 1;
            if !body.starts_with("boundary!(") {
                outside.push(format!("{name} ({path})"));
            }
        }
    }
    // Every ABI's exports, once: 22.11's 81, and 24.11's 83 of which 80 are
    // the same functions (set_max_queue_num, notify_guest, backend_config_change
    // are new; slave_config_change is gone).
    let mut in_maps: Vec<String> = ["version.map", "version-24.11.map"]
        .iter()
        .flat_map(|map| {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(map)).unwrap();
            text.lines().filter_map(|l| l.trim().strip_suffix(';').map(str::to_owned)).collect::<Vec<_>>()
        })
        .filter(|s| s.starts_with("rte_"))
        .collect();
    in_maps.sort();
    in_maps.dedup();
    assert_eq!(in_maps.len(), 84);
    assert_eq!(count, in_maps.len(), "one export per function of the version maps");
    assert!(outside.is_empty(), "exports whose body is not `boundary!(...)`: {outside:#?}");
}

#[test]
fn guest_memory_is_touched_only_through_race_tolerant_accesses() {
    // Plain, unaligned or bulk Rust accesses are data races on memory the
    // guest writes concurrently; guest memory goes through memory::raw
    // (asm and an opaque copy), atomics and volatile words.
    let forbidden =
        ["read_unaligned", "write_unaligned", "copy_nonoverlapping", "ptr::copy(", "from_raw_parts"];
    let mut found = Vec::new();
    for dir in ["src/guest", "src/net", "src/virtqueue"] {
        for (path, src) in rust_files(dir) {
            if path.ends_with("virtqueue/mock.rs") {
                continue; // the test driver, in memory the test owns
            }
            // Unit tests work on their own buffers.
            let src = src.split("#[cfg(test)]").next().unwrap();
            for f in forbidden {
                if src.contains(f) {
                    found.push(format!("{path}: {f}"));
                }
            }
        }
    }
    assert!(found.is_empty(), "non-volatile guest accesses: {found:#?}");
}

/// The top-level modules in layer order, as `docs/architecture.md` lists
/// them (its first code block: lines `src/NAME/`, lowest layer first).
fn documented_layers() -> Vec<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let block = doc.split("```").nth(1).expect("a code block in docs/architecture.md");
    block
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("src/"))
        .map(|l| l.split('/').next().unwrap().to_owned())
        .collect()
}

/// `crate::NAME` paths written in each top-level module's files (comments
/// stripped): the module graph.
fn module_edges() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut edges = std::collections::BTreeMap::new();
    for m in &mods {
        let mut to = std::collections::BTreeSet::new();
        for (_, text) in rust_files(&format!("src/{m}")) {
            let code: String =
                text.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + 7..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group
                        .split('}')
                        .next()
                        .unwrap()
                        .split(',')
                        .map(|p| p.trim().split("::").next().unwrap())
                        .collect()
                } else {
                    vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap()]
                };
                for n in names {
                    if n != m && mods.iter().any(|x| x == n) {
                        to.insert(n.to_owned());
                    }
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

#[test]
fn modules_depend_only_on_lower_layers_as_documented() {
    let layers = documented_layers();
    let edges = module_edges();
    let mut undocumented: Vec<&String> = edges.keys().filter(|m| !layers.contains(m)).collect();
    undocumented.sort();
    assert!(
        undocumented.is_empty(),
        "modules missing from docs/architecture.md's layer list: {undocumented:?}"
    );
    let rank = |m: &str| layers.iter().position(|l| l == m).unwrap();
    let mut outward = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if rank(to) >= rank(from) {
                outward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        outward.is_empty(),
        "use crate:: edges that point up or sideways (layers {layers:?}): {outward:?}"
    );
}
