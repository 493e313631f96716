//! The crate's layers, checked: every module imports only modules of lower layers, so the
//! import graph has no cycles. Read from the source (outside test code and comments), so a new
//! import that breaks the layering fails here with the offending file.
//!
//! ```text
//! tools       bench, generate, nab (feature `tools`)
//! job         pipeline
//! submission  submission
//! reports     reports
//! kafka       kafka (feature `kafka`): sources and topic sinks
//! sinks       output
//! timeseries  timeseries
//! webhook     webhook
//! audit       audit
//! cases       cases
//! alerts      manager
//! scoring     anomaly
//! detectors   rules, features, testing
//! framework   detect
//! links       links, live_reference
//! archive     archive
//! ingest      ingest, avro_json (feature `avro`)
//! reference   reference
//! at rest     encryption
//! config      config
//! model       model
//! ```

use std::collections::BTreeMap;
use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &["model"],
    &["config"],
    &["encryption"],
    &["reference"],
    &["ingest", "avro_json"],
    &["archive"],
    &["links", "live_reference"],
    &["detect"],
    &["rules", "features", "testing"],
    &["anomaly"],
    &["manager"],
    &["cases"],
    &["audit"],
    &["webhook"],
    &["timeseries"],
    &["output"],
    &["kafka", "checkpoint"],
    &["metrics"],
    &["reports"],
    &["submission"],
    &["cluster"],
    &["pipeline"],
    &["bench", "generate", "nab"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The code of a file without its test module and its comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn visit(dir: &Path, top: Option<&str>, found: &mut BTreeMap<String, Vec<(String, String)>>) {
    for entry in std::fs::read_dir(dir).expect("src").filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let module = top.map(String::from).unwrap_or(name.clone());
        if path.is_dir() {
            visit(&path, Some(&module), found);
        } else if path.extension().is_some_and(|e| e == "rs") && !(top.is_none() && name == "lib") {
            let text = code(&std::fs::read_to_string(&path).expect("read"));
            for (i, _) in text.match_indices("crate::") {
                let target: String = text[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if target != module {
                    found.entry(module.clone()).or_default().push((target, path.display().to_string()));
                }
            }
        }
    }
}

#[test]
fn every_module_imports_only_lower_layers() {
    let mut imports = BTreeMap::new();
    visit(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, &mut imports);
    assert!(imports.len() >= 8, "the source was read: {imports:?}");
    let mut wrong = Vec::new();
    for (module, targets) in &imports {
        let Some(from) = layer_of(module) else {
            wrong.push(format!("module `{module}` has no layer: add it to LAYERS"));
            continue;
        };
        for (target, file) in targets {
            match layer_of(target) {
                Some(to) if to < from => {}
                _ => wrong.push(format!("{file}: `{module}` imports `{target}`, which is not in a lower layer")),
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
