//! kafka-protocol-codegen: reads Kafka's JSON message definitions and writes one Rust module
//! per message into `kafka-protocol/src/messages/`, plus the API table and the dispatch enums.
//!
//! Usage (from the workspace root):
//!
//! ```text
//! cargo run -p kafka-protocol-codegen            # regenerate
//! cargo run -p kafka-protocol-codegen -- --check # fail if the checked-in files are stale
//! ```
//!
//! Options: `--spec DIR` (default `../shared/kafka-spec/message`), `--out DIR` (default
//! `kafka-protocol/src/messages`). Output is formatted with the workspace's rustfmt settings so
//! that `cargo fmt --check` and `--check` agree.

// The generator is a build tool, not library code: failing loudly on a malformed spec is right.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod emit;
mod spec;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use spec::{Kind, Spec};

fn main() -> ExitCode {
    let mut check = false;
    let mut spec_dir = PathBuf::from("../shared/kafka-spec/message");
    let mut out_dir = PathBuf::from("kafka-protocol/src/messages");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--check" => check = true,
            "--spec" => spec_dir = args.next().expect("--spec needs a directory").into(),
            "--out" => out_dir = args.next().expect("--out needs a directory").into(),
            "-h" | "--help" => {
                println!("usage: kafka-protocol-codegen [--check] [--spec DIR] [--out DIR]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let rustfmt_config = find_rustfmt_config(&out_dir);

    let mut specs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&spec_dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", spec_dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let src = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        match spec::parse_spec(&file, &src) {
            Ok(s) => specs.push(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for s in &specs {
        files.insert(format!("{}.rs", emit::module_name(s)), emit::emit_spec(s));
    }
    files.insert("api_key.rs".into(), emit_api_keys(&specs));
    files.insert("mod.rs".into(), emit_mod(&specs));

    let mut stale = Vec::new();
    for (name, code) in &files {
        let formatted =
            rustfmt(code, rustfmt_config.as_deref()).unwrap_or_else(|e| panic!("rustfmt failed on {name}: {e}"));
        let path = out_dir.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() != Some(formatted.as_str()) {
            if check {
                stale.push(name.clone());
            } else {
                std::fs::create_dir_all(&out_dir).unwrap();
                std::fs::write(&path, formatted).unwrap();
            }
        }
    }
    // Files that no longer correspond to a definition.
    if let Ok(rd) = std::fs::read_dir(&out_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.ends_with(".rs") && !files.contains_key(&n) {
                if check {
                    stale.push(format!("{n} (not generated)"));
                } else {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
    }
    if check {
        if stale.is_empty() {
            println!("kafka-protocol-codegen: {} generated files are up to date", files.len());
            ExitCode::SUCCESS
        } else {
            eprintln!("kafka-protocol-codegen: stale generated files (run `cargo run -p kafka-protocol-codegen`):");
            for s in stale {
                eprintln!("  {s}");
            }
            ExitCode::FAILURE
        }
    } else {
        println!("kafka-protocol-codegen: wrote {} files to {}", files.len(), out_dir.display());
        ExitCode::SUCCESS
    }
}

fn find_rustfmt_config(start: &Path) -> Option<PathBuf> {
    let mut dir = std::fs::canonicalize(start).ok().or_else(|| std::env::current_dir().ok())?;
    loop {
        let candidate = dir.join("rustfmt.toml");
        if candidate.exists() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn rustfmt(code: &str, config: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new("rustfmt");
    cmd.args(["--edition", "2021", "--emit", "stdout"]);
    if let Some(c) = config {
        cmd.arg("--config-path").arg(c);
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    child.stdin.take().unwrap().write_all(code.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let mut numbered = String::new();
        for (i, l) in code.lines().enumerate() {
            let _ = writeln!(numbered, "{:5} {l}", i + 1);
        }
        return Err(format!("{}\n{numbered}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

struct Api<'a> {
    key: i16,
    name: String,
    req: &'a Spec,
    resp: &'a Spec,
}

fn apis(specs: &[Spec]) -> Vec<Api<'_>> {
    let mut reqs: BTreeMap<i16, &Spec> = BTreeMap::new();
    let mut resps: BTreeMap<i16, &Spec> = BTreeMap::new();
    for s in specs {
        match (s.kind, s.api_key) {
            (Kind::Request, Some(k)) => {
                reqs.insert(k, s);
            }
            (Kind::Response, Some(k)) => {
                resps.insert(k, s);
            }
            _ => {}
        }
    }
    reqs.into_iter()
        .map(|(k, req)| {
            let resp = resps.get(&k).unwrap_or_else(|| panic!("no response for api key {k}"));
            assert_eq!(req.valid_versions, resp.valid_versions, "request/response versions differ for key {k}");
            let name = req.name.strip_suffix("Request").unwrap_or(&req.name).to_string();
            Api { key: k, name, req, resp }
        })
        .collect()
}

fn emit_api_keys(specs: &[Spec]) -> String {
    let apis = apis(specs);
    let mut o = String::new();
    o.push_str("// Generated by kafka-protocol-codegen from the *Request.json definitions. Do not edit.\n\n");
    o.push_str("//! The API table: every API key with its valid versions, flexible versions and headers.\n\n");
    o.push_str("use crate::message::VersionRange;\n\n");
    o.push_str("/// Every Kafka API, by key.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\n");
    o.push_str("#[repr(i16)]\n#[non_exhaustive]\npub enum ApiKey {\n");
    for a in &apis {
        let _ = writeln!(o, "    /// {} (key {}), versions {}.", a.name, a.key, a.req.valid_versions.describe());
        let _ = writeln!(o, "    {} = {},", a.name, a.key);
    }
    o.push_str("}\n\nimpl ApiKey {\n");
    o.push_str("    /// Every API key, in key order.\n    pub const ALL: &'static [ApiKey] = &[");
    for a in &apis {
        let _ = write!(o, "ApiKey::{}, ", a.name);
    }
    o.push_str("];\n\n");
    o.push_str("    /// The API for a wire key, if Kafka defines one.\n    pub const fn from_key(key: i16) -> Option<ApiKey> {\n        match key {\n");
    for a in &apis {
        let _ = writeln!(o, "            {} => Some(ApiKey::{}),", a.key, a.name);
    }
    o.push_str("            _ => None,\n        }\n    }\n\n");
    o.push_str("    /// The wire key.\n    pub const fn key(self) -> i16 {\n        self as i16\n    }\n\n");
    let table = |o: &mut String, doc: &str, sig: &str, f: &dyn Fn(&Api<'_>) -> String| {
        let _ = writeln!(o, "    /// {doc}\n    pub const fn {sig} {{\n        match self {{");
        for a in &apis {
            let _ = writeln!(o, "            ApiKey::{} => {},", a.name, f(a));
        }
        o.push_str("        }\n    }\n\n");
    };
    table(&mut o, "The API's name as Kafka spells it (e.g. `Produce`).", "name(self) -> &'static str", &|a| {
        format!("{:?}", a.name)
    });
    table(&mut o, "The versions this crate can encode and decode.", "valid_versions(self) -> VersionRange", &|a| {
        format!("VersionRange::new({}, {})", a.req.valid_versions.min, a.req.valid_versions.max)
    });
    table(
        &mut o,
        "The first flexible version (compact encodings, tagged fields), if any.",
        "first_flexible_version(self) -> Option<i16>",
        &|a| {
            let f = a.req.flexible_versions.intersect(&a.req.valid_versions);
            if f.is_none() {
                "None".into()
            } else {
                format!("Some({})", f.min)
            }
        },
    );
    table(
        &mut o,
        "Whether the highest valid version is still marked unstable upstream (not to be sent to real brokers).",
        "latest_version_unstable(self) -> bool",
        &|a| format!("{}", a.req.latest_version_unstable),
    );
    table(&mut o, "Versions Kafka marks deprecated.", "deprecated_versions(self) -> VersionRange", &|a| {
        let d = a.req.deprecated_versions;
        if d.is_none() {
            "VersionRange::NONE".into()
        } else {
            format!("VersionRange::new({}, {})", d.min, d.max)
        }
    });
    table(
        &mut o,
        "Which Kafka listeners serve the API (`broker`, `controller`, `zkBroker`).",
        "listeners(self) -> &'static [&'static str]",
        &|a| format!("&{:?}", a.req.listeners),
    );
    o.push_str("}\n");
    o
}

fn emit_mod(specs: &[Spec]) -> String {
    let apis = apis(specs);
    let mut o = String::new();
    o.push_str("// Generated by kafka-protocol-codegen. Do not edit.\n\n");
    o.push_str("//! Every message Kafka defines, one module each, generated from Kafka's JSON definitions.\n//!\n");
    o.push_str("//! Top-level types are re-exported here; nested structs live in their message's module.\n\n");
    o.push_str("use crate::error::Result;\nuse crate::message::Message;\nuse crate::primitives::Writer;\n\n");
    o.push_str("pub mod api_key;\n");
    for s in specs {
        let m = emit::module_name(s);
        let _ = writeln!(o, "pub mod {m};");
    }
    o.push('\n');
    o.push_str("pub use api_key::ApiKey;\n");
    for s in specs {
        let m = emit::module_name(s);
        let _ = writeln!(o, "pub use {m}::{};", s.name);
    }
    o.push('\n');
    for a in &apis {
        let _ = writeln!(
            o,
            "impl crate::message::Request for {} {{\n    const API_KEY: ApiKey = ApiKey::{};\n    type Response = {};\n}}\n",
            a.req.name, a.name, a.resp.name
        );
        let _ = writeln!(
            o,
            "impl crate::message::Response for {} {{\n    const API_KEY: ApiKey = ApiKey::{};\n    type Request = {};\n}}\n",
            a.resp.name, a.name, a.req.name
        );
    }
    for (kind, suffix, doc) in [
        ("RequestBody", "req", "Any request body, for code that handles requests by key (brokers, fuzzers, proxies)."),
        ("ResponseBody", "resp", "Any response body, for code that handles responses by key."),
    ] {
        let name_of = |a: &Api<'_>| if suffix == "req" { a.req.name.clone() } else { a.resp.name.clone() };
        let _ = writeln!(o, "/// {doc}\n#[derive(Debug, Clone, PartialEq)]\n#[non_exhaustive]\npub enum {kind} {{");
        for a in &apis {
            let n = name_of(a);
            let _ = writeln!(o, "    /// A `{n}`.\n    {}({n}),", a.name);
        }
        o.push_str("}\n\n");
        let _ = writeln!(o, "impl {kind} {{");
        let _ = writeln!(
            o,
            "    /// The API key of this body.\n    pub fn api_key(&self) -> ApiKey {{\n        match self {{"
        );
        for a in &apis {
            let _ = writeln!(o, "            {kind}::{}(_) => ApiKey::{},", a.name, a.name);
        }
        o.push_str("        }\n    }\n\n");
        let _ = writeln!(
            o,
            "    /// Decodes a body of the given API and version.\n    pub fn decode(api_key: ApiKey, buf: &mut bytes::Bytes, version: i16) -> Result<Self> {{\n        Ok(match api_key {{"
        );
        for a in &apis {
            let _ = writeln!(
                o,
                "            ApiKey::{} => {kind}::{}({}::decode(buf, version)?),",
                a.name,
                a.name,
                name_of(a)
            );
        }
        o.push_str("        })\n    }\n\n");
        let _ = writeln!(
            o,
            "    /// Encodes the body at `version`.\n    pub fn encode<W: Writer + ?Sized>(&self, w: &mut W, version: i16) -> Result<()> {{\n        match self {{"
        );
        for a in &apis {
            let _ = writeln!(o, "            {kind}::{}(m) => m.encode(w, version),", a.name);
        }
        o.push_str("        }\n    }\n\n");
        let _ = writeln!(
            o,
            "    /// The default body of an API (useful to build error responses).\n    pub fn default_for(api_key: ApiKey) -> Self {{\n        match api_key {{"
        );
        for a in &apis {
            let _ = writeln!(o, "            ApiKey::{} => {kind}::{}({}::default()),", a.name, a.name, name_of(a));
        }
        o.push_str("        }\n    }\n}\n\n");
        for a in &apis {
            let n = name_of(a);
            let _ = writeln!(
                o,
                "impl From<{n}> for {kind} {{\n    fn from(m: {n}) -> Self {{\n        {kind}::{}(m)\n    }}\n}}\n",
                a.name
            );
        }
    }
    o.push_str("/// Test support: something that is called once per message type.\n#[cfg(test)]\npub(crate) trait MessageVisitor {\n    /// Called with each message type.\n    fn visit<M: Message + Sample>(&mut self);\n}\n\n");
    o.push_str("/// Test support: builds a value with every field set (see each struct's `sample`).\n#[cfg(test)]\npub(crate) trait Sample {\n    /// A value valid at `version` with every field present there set to a non-default value.\n    fn sample(version: i16, seed: u64) -> Self;\n}\n\n");
    for s in specs {
        let _ = writeln!(o, "#[cfg(test)]\nimpl Sample for {0} {{\n    fn sample(version: i16, seed: u64) -> Self {{\n        {0}::sample(version, seed)\n    }}\n}}\n", s.name);
    }
    o.push_str("/// Test support: visits every message type, requests, responses, headers and data.\n#[cfg(test)]\npub(crate) fn visit_all<V: MessageVisitor>(v: &mut V) {\n");
    for s in specs {
        let _ = writeln!(o, "    v.visit::<{}>();", s.name);
    }
    o.push_str("}\n\n");

    o
}
