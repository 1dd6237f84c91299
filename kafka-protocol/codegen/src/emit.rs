//! Turning a [`Spec`] into Rust source.
//!
//! The emitted code is plain and repetitive on purpose: one `encode` and one `decode` per
//! struct, each field guarded by the versions it exists in. Everything version-dependent is a
//! comparison against `version`; nothing is looked up at run time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::spec::{Field, FieldType, Kind, Spec, StructSpec, Versions};

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in",
    "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait",
    "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do",
    "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// `FetchTopic` -> `fetch_topic`, `IsKRaftController` -> `is_k_raft_controller`.
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn field_ident(name: &str) -> String {
    let s = snake(name);
    if KEYWORDS.contains(&s.as_str()) {
        format!("r#{s}")
    } else {
        s
    }
}

fn local_ident(name: &str) -> String {
    format!("f_{}", snake(name))
}

/// Escapes text for a doc comment: brackets and angle brackets would otherwise be read as
/// intra-doc links or HTML by rustdoc.
fn doc_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '[' => out.push_str("\\["),
            ']' => out.push_str("\\]"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' => out.push_str("\\*"),
            '`' => out.push('\''),
            _ => out.push(c),
        }
    }
    out
}

fn doc_lines(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            let _ = writeln!(out, "{indent}///");
        } else {
            let _ = writeln!(out, "{indent}/// {line}");
        }
    }
}

/// A boolean Rust expression testing `version` against `range`, given that `version` is known
/// to be within `within`. Returns "true" or "false" when the answer does not depend on it.
fn cond(range: Versions, within: Versions) -> String {
    let r = range.intersect(&within);
    if r.is_none() {
        return "false".into();
    }
    let lo = r.min > within.min;
    let hi = r.max < within.max;
    match (lo, hi) {
        (false, false) => "true".into(),
        (true, false) => format!("version >= {}", r.min),
        (false, true) => format!("version <= {}", r.max),
        (true, true) if r.min == r.max => format!("version == {}", r.min),
        (true, true) => format!("({}..={}).contains(&version)", r.min, r.max),
    }
}

/// The negation of a condition produced by [`cond`], in its simplest form.
fn negate(c: &str) -> String {
    if let Some(n) = c.strip_prefix("version >= ") {
        format!("version < {n}")
    } else if let Some(n) = c.strip_prefix("version <= ") {
        format!("version > {n}")
    } else if let Some(n) = c.strip_prefix("version == ") {
        format!("version != {n}")
    } else if c == "true" {
        "false".into()
    } else if c == "false" {
        "true".into()
    } else {
        format!("!{c}")
    }
}

/// Whether `body` uses `ident` as a standalone identifier (not as part of a longer name or a
/// field access).
fn uses_ident(body: &str, ident: &str) -> bool {
    let bytes = body.as_bytes();
    let mut start = 0;
    while let Some(pos) = body[start..].find(ident) {
        let i = start + pos;
        let before = if i == 0 { b' ' } else { bytes[i - 1] };
        let after = bytes.get(i + ident.len()).copied().unwrap_or(b' ');
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if !is_word(before) && before != b'.' && before != b'"' && !is_word(after) {
            return true;
        }
        start = i + ident.len();
    }
    false
}

#[derive(Clone)]
enum Null {
    Never,
    Always,
    When(String),
}

struct Ctx<'a> {
    spec: &'a Spec,
    structs: BTreeMap<String, StructSpec>,
    /// Versions in which the message is flexible, limited to its valid versions.
    flexible: Versions,
}

impl Ctx<'_> {
    fn within(&self) -> Versions {
        self.spec.valid_versions
    }

    fn is_nullable(&self, f: &Field) -> bool {
        !f.nullable_versions.intersect(&f.versions).intersect(&self.within()).is_none()
            && matches!(
                f.ty,
                FieldType::String | FieldType::Bytes | FieldType::Records | FieldType::Array(_) | FieldType::Struct(_)
            )
    }

    fn null_mode(&self, f: &Field) -> Null {
        if !self.is_nullable(f) {
            return Null::Never;
        }
        let present = f.versions.intersect(&self.within());
        if f.nullable_versions.covers(&present) {
            Null::Always
        } else {
            Null::When(cond(f.nullable_versions, present))
        }
    }

    /// The compactness expression for a field: `compact` normally, `false` when the field opts
    /// out of flexible encoding (RequestHeader.ClientId).
    fn compact_for(&self, f: &Field) -> &'static str {
        match f.flexible_versions {
            Some(v) if v.is_none() => "false",
            _ => {
                if self.flexible.is_none() {
                    "false"
                } else {
                    "compact"
                }
            }
        }
    }

    fn base_type(&self, ty: &FieldType) -> String {
        match ty {
            FieldType::Bool => "bool".into(),
            FieldType::Int8 => "i8".into(),
            FieldType::Int16 => "i16".into(),
            FieldType::Uint16 => "u16".into(),
            FieldType::Int32 => "i32".into(),
            FieldType::Uint32 => "u32".into(),
            FieldType::Int64 => "i64".into(),
            FieldType::Float64 => "f64".into(),
            FieldType::String => "String".into(),
            FieldType::Bytes | FieldType::Records => "bytes::Bytes".into(),
            FieldType::Uuid => "p::Uuid".into(),
            FieldType::Struct(n) => n.clone(),
            FieldType::Array(inner) => format!("Vec<{}>", self.base_type(inner)),
        }
    }

    fn rust_type(&self, f: &Field) -> String {
        let base = self.base_type(&f.ty);
        if self.is_nullable(f) {
            format!("Option<{base}>")
        } else {
            base
        }
    }

    fn int_default(f: &Field) -> String {
        match &f.default {
            None => "0".into(),
            Some(d) => {
                let d = d.trim();
                let (neg, body) = match d.strip_prefix('-') {
                    Some(b) => (true, b),
                    None => (false, d),
                };
                let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                    i64::from_str_radix(h, 16).unwrap_or_else(|e| panic!("bad hex default {d} for {}: {e}", f.name))
                } else {
                    body.parse::<i64>().unwrap_or_else(|e| panic!("bad default {d} for {}: {e}", f.name))
                };
                format!("{}", if neg { -v } else { v })
            }
        }
    }

    fn default_expr(&self, f: &Field) -> String {
        let nullable = self.is_nullable(f);
        let is_null_default = f.default.as_deref() == Some("null");
        if nullable && (is_null_default || f.ty == FieldType::Records) {
            return "None".into();
        }
        let base = match &f.ty {
            FieldType::Bool
            | FieldType::Int8
            | FieldType::Int16
            | FieldType::Uint16
            | FieldType::Int32
            | FieldType::Uint32
            | FieldType::Int64
            | FieldType::Float64 => self.default_expr_base(f),
            FieldType::String => match f.default.as_deref() {
                None | Some("") => "String::new()".into(),
                Some(s) => format!("String::from({s:?})"),
            },
            FieldType::Bytes | FieldType::Records => "bytes::Bytes::new()".into(),
            FieldType::Uuid => "p::Uuid::ZERO".into(),
            FieldType::Struct(n) => format!("{n}::default()"),
            FieldType::Array(_) => "Vec::new()".into(),
        };
        if nullable {
            format!("Some({base})")
        } else {
            base
        }
    }

    /// An expression that is true when `place` (a field of `self`) differs from its default.
    fn differs_expr(&self, f: &Field, place: &str) -> String {
        let d = self.default_expr(f);
        match d.as_str() {
            "None" => format!("{place}.is_some()"),
            "Vec::new()" | "String::new()" | "bytes::Bytes::new()" => format!("!{place}.is_empty()"),
            "p::Uuid::ZERO" => format!("!{place}.is_zero()"),
            "false" => place.to_string(),
            "true" => format!("!{place}"),
            _ if d.starts_with("String::from(") => format!("{place} != {}", &d["String::from(".len()..d.len() - 1]),
            _ => format!("{place} != {d}"),
        }
    }

    /// Minimal encoded size of a value of `ty` at `version` (for bounding array allocations).
    fn min_size(&self, ty: &FieldType, version: i16, compact: bool) -> usize {
        match ty {
            FieldType::Bool | FieldType::Int8 => 1,
            FieldType::Int16 | FieldType::Uint16 => 2,
            FieldType::Int32 | FieldType::Uint32 => 4,
            FieldType::Int64 | FieldType::Float64 => 8,
            FieldType::Uuid => 16,
            FieldType::String => {
                if compact {
                    1
                } else {
                    2
                }
            }
            FieldType::Bytes | FieldType::Records | FieldType::Array(_) => {
                if compact {
                    1
                } else {
                    4
                }
            }
            FieldType::Struct(n) => {
                let Some(s) = self.structs.get(n) else { return 0 };
                let mut total = usize::from(self.flexible.contains(version));
                for f in &s.fields {
                    let regular = regular_versions(f);
                    if regular.contains(version) {
                        let c = compact && !matches!(f.flexible_versions, Some(v) if v.is_none());
                        total += if self.is_nullable(f) && f.nullable_versions.contains(version) {
                            1
                        } else {
                            self.min_size(&f.ty, version, c)
                        };
                    }
                }
                total
            }
        }
    }

    fn array_min_size(&self, f: &Field, inner: &FieldType) -> usize {
        let present = f.versions.intersect(&self.within());
        let mut min = usize::MAX;
        for v in present.min..=present.max.min(present.min.saturating_add(200)) {
            let c = self.flexible.contains(v) && !matches!(f.flexible_versions, Some(fv) if fv.is_none());
            min = min.min(self.min_size(inner, v, c));
        }
        if min == usize::MAX {
            0
        } else {
            min
        }
    }

    // ---------------------------------------------------------------- encoding

    /// Statements writing a non-null value. `val` is either a place of type T (`self.x`) when
    /// `is_ref` is false, or a `&T` when true.
    fn write_value(&self, ty: &FieldType, val: &str, is_ref: bool, compact: &str, depth: usize) -> String {
        let copy = |func: &str| {
            if is_ref {
                format!("p::{func}(w, *{val});\n")
            } else {
                format!("p::{func}(w, {val});\n")
            }
        };
        match ty {
            FieldType::Bool => copy("write_bool"),
            FieldType::Int8 => copy("write_i8"),
            FieldType::Int16 => copy("write_i16"),
            FieldType::Uint16 => copy("write_u16"),
            FieldType::Int32 => copy("write_i32"),
            FieldType::Uint32 => copy("write_u32"),
            FieldType::Int64 => copy("write_i64"),
            FieldType::Float64 => copy("write_f64"),
            FieldType::Uuid => {
                if is_ref {
                    format!("p::write_uuid(w, {val});\n")
                } else {
                    format!("p::write_uuid(w, &{val});\n")
                }
            }
            FieldType::String => format!("p::write_nullable_string(w, Some({val}.as_str()), {compact})?;\n"),
            FieldType::Bytes => format!("p::write_nullable_bytes(w, Some(&{val}[..]), {compact})?;\n"),
            FieldType::Records => {
                if is_ref {
                    format!("p::write_nullable_records(w, Some({val}), {compact})?;\n")
                } else {
                    format!("p::write_nullable_records(w, Some(&{val}), {compact})?;\n")
                }
            }
            FieldType::Struct(_) => format!("{val}.encode(w, version)?;\n"),
            FieldType::Array(inner) => {
                let e = format!("e{depth}");
                format!(
                    "p::write_array_len(w, Some({val}.len()), {compact})?;\nfor {e} in {val}.iter() {{\n{}}}\n",
                    self.write_value(inner, &e, true, compact, depth + 1)
                )
            }
        }
    }

    fn write_null(ty: &FieldType, compact: &str) -> String {
        match ty {
            FieldType::String => format!("p::write_nullable_string(w, None, {compact})?;\n"),
            FieldType::Bytes => format!("p::write_nullable_bytes(w, None, {compact})?;\n"),
            FieldType::Records => format!("p::write_nullable_records(w, None, {compact})?;\n"),
            FieldType::Array(_) => format!("p::write_array_len(w, None, {compact})?;\n"),
            FieldType::Struct(_) => "p::write_i8(w, -1);\n".into(),
            _ => String::new(),
        }
    }

    /// Statements writing field `f` of `self` (present in this version).
    fn write_field(&self, owner: &str, f: &Field, compact: &str) -> String {
        let place = format!("self.{}", field_ident(&f.name));
        let null_err =
            format!("return Err(ProtocolError::NullNotAllowed {{ field: \"{owner}.{}\", version }});\n", f.name);
        match self.null_mode(f) {
            Null::Never => self.write_value(&f.ty, &place, false, compact, 0),
            Null::Always => {
                let marker = if f.ty.is_struct() { "p::write_i8(w, 1);\n".to_string() } else { String::new() };
                let none_arm = Self::write_null(&f.ty, compact);
                self.write_option(&place, &f.ty, compact, &marker, &none_arm)
            }
            Null::When(c) => {
                let marker =
                    if f.ty.is_struct() { format!("if {c} {{ p::write_i8(w, 1); }}\n") } else { String::new() };
                let none_arm = format!("if {c} {{\n{}}} else {{\n{null_err}}}\n", Self::write_null(&f.ty, compact));
                self.write_option(&place, &f.ty, compact, &marker, &none_arm)
            }
        }
    }

    /// Statements writing an `Option` field: the marker (nullable structs) and value when set,
    /// `none_arm` when not.
    fn write_option(&self, place: &str, ty: &FieldType, compact: &str, marker: &str, none_arm: &str) -> String {
        format!(
            "match &{place} {{\nSome(v) => {{\n{marker}{}}}\nNone => {{\n{none_arm}}}\n}}\n",
            self.write_value(ty, "v", true, compact, 0)
        )
    }

    // ---------------------------------------------------------------- decoding

    /// An expression reading a non-null value of `ty` from `buf`.
    fn read_value(&self, owner: &str, f: &Field, ty: &FieldType, buf: &str, compact: &str, depth: usize) -> String {
        let fname = format!("{owner}.{}", f.name);
        match ty {
            FieldType::Bool => format!("p::read_bool({buf})?"),
            FieldType::Int8 => format!("p::read_i8({buf})?"),
            FieldType::Int16 => format!("p::read_i16({buf})?"),
            FieldType::Uint16 => format!("p::read_u16({buf})?"),
            FieldType::Int32 => format!("p::read_i32({buf})?"),
            FieldType::Uint32 => format!("p::read_u32({buf})?"),
            FieldType::Int64 => format!("p::read_i64({buf})?"),
            FieldType::Float64 => format!("p::read_f64({buf})?"),
            FieldType::Uuid => format!("p::read_uuid({buf})?"),
            FieldType::String => format!("p::read_string({buf}, {compact}, \"{fname}\", version)?"),
            FieldType::Bytes | FieldType::Records => {
                format!("p::read_bytes({buf}, {compact}, \"{fname}\", version)?")
            }
            FieldType::Struct(n) => format!("{n}::decode({buf}, version)?"),
            FieldType::Array(inner) => {
                let (n, v) = (format!("n{depth}"), format!("v{depth}"));
                let min = self.array_min_size(f, inner);
                format!(
                    "match p::read_array_len({buf}, {compact}, {min})? {{\n\
                     None => return Err(ProtocolError::NullNotAllowed {{ field: \"{fname}\", version }}),\n\
                     Some({n}) => {{\nlet mut {v} = p::vec_for({n}, {buf}.len(), {min});\n\
                     for _ in 0..{n} {{\n{v}.push({});\n}}\n{v}\n}}\n}}",
                    self.read_value(owner, f, inner, buf, compact, depth + 1)
                )
            }
        }
    }

    /// An expression reading a possibly-null value (an `Option`).
    fn read_nullable(&self, owner: &str, f: &Field, buf: &str, compact: &str) -> String {
        match &f.ty {
            FieldType::String => format!("p::read_nullable_string({buf}, {compact})?"),
            FieldType::Bytes | FieldType::Records => format!("p::read_nullable_bytes({buf}, {compact})?"),
            FieldType::Struct(n) => {
                format!("if p::read_i8({buf})? < 0 {{ None }} else {{ Some({n}::decode({buf}, version)?) }}")
            }
            FieldType::Array(inner) => {
                let min = self.array_min_size(f, inner);
                format!(
                    "match p::read_array_len({buf}, {compact}, {min})? {{\nNone => None,\n\
                     Some(n0) => {{\nlet mut v0 = p::vec_for(n0, {buf}.len(), {min});\n\
                     for _ in 0..n0 {{\nv0.push({});\n}}\nSome(v0)\n}}\n}}",
                    self.read_value(owner, f, inner, buf, compact, 1)
                )
            }
            _ => format!("Some({})", self.read_value(owner, f, &f.ty, buf, compact, 0)),
        }
    }

    fn read_field(&self, owner: &str, f: &Field, buf: &str, compact: &str) -> String {
        match self.null_mode(f) {
            Null::Never => self.read_value(owner, f, &f.ty, buf, compact, 0),
            Null::Always => self.read_nullable(owner, f, buf, compact),
            Null::When(c) => format!(
                "if {c} {{\n{}\n}} else {{\nSome({})\n}}",
                self.read_nullable(owner, f, buf, compact),
                self.read_value(owner, f, &f.ty, buf, compact, 0)
            ),
        }
    }

    // ---------------------------------------------------------------- test samples

    /// An expression for a non-default value of `ty` (test-only sample builders).
    fn sample_value(&self, f: &Field, ty: &FieldType, top: bool, salt: u64) -> String {
        let d = if top { self.default_expr_base(f) } else { "0".to_string() };
        let int = |t: &str| format!("({d} as i64).wrapping_add(1 + (seed.wrapping_add({salt}) % 7) as i64) as {t}");
        match ty {
            FieldType::Bool => {
                if top {
                    if d == "true" {
                        "false".into()
                    } else {
                        "true".into()
                    }
                } else {
                    "seed % 2 == 0".into()
                }
            }
            FieldType::Int8 => int("i8"),
            FieldType::Int16 => int("i16"),
            FieldType::Uint16 => int("u16"),
            FieldType::Int32 => int("i32"),
            FieldType::Uint32 => int("u32"),
            FieldType::Int64 => int("i64"),
            FieldType::Float64 => {
                let d = if top { d } else { "0.0".into() };
                format!("{d} + 1.5")
            }
            FieldType::String => format!("format!(\"s{{}}\", seed.wrapping_add({salt}))"),
            FieldType::Bytes | FieldType::Records => {
                format!("bytes::Bytes::from(format!(\"b{{}}\", seed.wrapping_add({salt})).into_bytes())")
            }
            FieldType::Uuid => format!("p::Uuid::from_u64_pair(seed.wrapping_add({}), 7)", salt + 1),
            FieldType::Struct(n) => format!("{n}::sample(version, seed.wrapping_add({salt}))"),
            FieldType::Array(inner) => format!(
                "vec![{}, {}]",
                self.sample_value(f, inner, false, salt + 1),
                self.sample_value(f, inner, false, salt + 2)
            ),
        }
    }

    /// The default of a scalar field as a literal (`0` for types that have no scalar default).
    fn default_expr_base(&self, f: &Field) -> String {
        match &f.ty {
            FieldType::Bool => match f.default.as_deref() {
                Some("true") => "true".into(),
                _ => "false".into(),
            },
            FieldType::Float64 => match &f.default {
                Some(d) => {
                    let v: f64 = d.parse().unwrap_or_else(|e| panic!("bad float default {d} for {}: {e}", f.name));
                    format!("{v:?}")
                }
                None => "0.0".into(),
            },
            FieldType::Int8
            | FieldType::Int16
            | FieldType::Uint16
            | FieldType::Int32
            | FieldType::Uint32
            | FieldType::Int64 => Self::int_default(f),
            _ => "0".into(),
        }
    }

    fn emit_sample(&self, out: &mut String, name: &str, fields: &[Field]) {
        let mut body = String::new();
        for (i, f) in fields.iter().enumerate() {
            let present = cond(f.versions, self.within());
            let value = self.sample_value(f, &f.ty, true, i as u64 * 13);
            let default = self.default_expr(f);
            let v = match self.null_mode(f) {
                Null::Never => value,
                Null::Always => format!("if seed % 3 == 0 {{ None }} else {{ Some({value}) }}"),
                Null::When(c) => format!("if {c} && seed % 3 == 0 {{ None }} else {{ Some({value}) }}"),
            };
            let expr = match present.as_str() {
                "true" => v,
                "false" => default,
                c => format!("if {c} {{ {v} }} else {{ {default} }}"),
            };
            let _ = writeln!(body, "{}: {expr},", field_ident(&f.name));
        }
        let flex = cond(self.flexible, self.within());
        let unknown = if flex == "false" {
            "Vec::new()".to_string()
        } else {
            format!(
                "if {flex} {{ vec![p::RawTaggedField {{ tag: 10_000 + (seed % 5) as u32, data: bytes::Bytes::from_static(b\"xyz\") }}] }} else {{ Vec::new() }}"
            )
        };
        let _ = writeln!(
            out,
            "#[cfg(test)]\nimpl {name} {{\n\
             /// A value with every field present at `version` set to a non-default value (tests only).\n\
             #[allow(unused_variables, clippy::unnecessary_cast, clippy::needless_bool, clippy::identity_op)]\n\
             pub(crate) fn sample(version: i16, seed: u64) -> Self {{\n{name} {{\n{body}unknown_tagged_fields: {unknown},\n}}\n}}\n}}\n"
        );
    }

    // ---------------------------------------------------------------- structs

    fn field_doc(&self, f: &Field) -> String {
        let mut d = String::new();
        if !f.about.is_empty() {
            d.push_str(&doc_escape(&f.about));
            d.push_str("\n\n");
        }
        let _ = write!(d, "Versions: {}", f.versions.describe());
        if self.is_nullable(f) {
            let _ = write!(d, "; nullable: {}", f.nullable_versions.describe());
        }
        if let Some(tag) = f.tag {
            let _ = write!(d, "; tagged (tag {tag}): {}", f.tagged_versions.describe());
        }
        if let Some(def) = &f.default {
            let _ = write!(d, "; default: {}", doc_escape(def));
        }
        if f.ignorable {
            d.push_str("; ignorable");
        }
        if let Some(e) = &f.entity_type {
            let _ = write!(d, "; entity: {e}");
        }
        d.push('.');
        d
    }

    fn emit_struct(&self, out: &mut String, name: &str, fields: &[Field], doc: &str, top: bool) {
        doc_lines(out, "", doc);
        let derivable = fields.iter().all(|f| {
            let d = self.default_expr(f);
            matches!(
                d.as_str(),
                "0" | "false"
                    | "0.0"
                    | "String::new()"
                    | "bytes::Bytes::new()"
                    | "p::Uuid::ZERO"
                    | "Vec::new()"
                    | "None"
            ) || d == format!("{}::default()", f.ty.struct_name().unwrap_or("?"))
        });
        let derives = if derivable { "Debug, Clone, PartialEq, Default" } else { "Debug, Clone, PartialEq" };
        let _ = writeln!(out, "#[derive({derives})]\npub struct {name} {{");
        for f in fields {
            doc_lines(out, "    ", &self.field_doc(f));
            let _ = writeln!(out, "    pub {}: {},", field_ident(&f.name), self.rust_type(f));
        }
        let _ = writeln!(out, "    /// Tagged fields this definition does not know, kept as received.");
        let _ = writeln!(out, "    pub unknown_tagged_fields: Vec<p::RawTaggedField>,\n}}\n");

        if !derivable {
            let _ = writeln!(out, "impl Default for {name} {{\n    fn default() -> Self {{\n        {name} {{");
            for f in fields {
                let _ = writeln!(out, "            {}: {},", field_ident(&f.name), self.default_expr(f));
            }
            let _ = writeln!(out, "            unknown_tagged_fields: Vec::new(),\n        }}\n    }}\n}}\n");
        }

        // encode / decode bodies
        let flex_cond = cond(self.flexible, self.within());
        let mut enc = String::new();
        let mut tagged_enc = String::new();
        let mut dec = String::new();
        let mut tagged_dec = String::new();
        let mut ctor = String::new();
        for f in fields {
            let ident = field_ident(&f.name);
            let local = local_ident(&f.name);
            let compact = self.compact_for(f);
            let regular = regular_versions(f);
            let tagged = f.tagged_versions.intersect(&f.versions);
            let reg_c = cond(regular, self.within());
            let tag_c = cond(tagged, self.within());
            let place = format!("self.{ident}");

            // encode
            let missing_err = format!(
                "return Err(ProtocolError::FieldNotSupported {{ message: \"{name}\", field: \"{}\", version }});\n",
                f.name
            );
            let differs = self.differs_expr(f, &place);
            let write = self.write_field(name, f, compact);
            let missing = |pre: Option<String>| -> String {
                if f.ignorable {
                    return String::new();
                }
                match pre {
                    Some(p) => format!("{p} && {differs} {{\n{missing_err}}}\n"),
                    None => format!("{differs} {{\n{missing_err}}}\n"),
                }
            };
            match (reg_c.as_str(), tag_c.as_str()) {
                ("true", _) => enc.push_str(&write),
                ("false", "false") => {
                    let m = missing(None);
                    if !m.is_empty() {
                        let _ = write!(enc, "if {m}");
                    }
                }
                ("false", "true") => {}
                ("false", t) => {
                    let m = missing(Some(negate(t)));
                    if !m.is_empty() {
                        let _ = write!(enc, "if {m}");
                    }
                }
                (r, t) => {
                    let m = if t == "false" { missing(None) } else { missing(Some(negate(t))) };
                    if m.is_empty() {
                        let _ = write!(enc, "if {r} {{\n{write}}}\n");
                    } else {
                        let _ = write!(enc, "if {r} {{\n{write}}} else if {m}");
                    }
                }
            }
            if let Some(tag) = f.tag {
                if tag_c != "false" {
                    let body = self.write_field(name, f, "true");
                    let test = if tag_c == "true" {
                        self.differs_expr(f, &place)
                    } else {
                        format!("{tag_c} && {}", self.differs_expr(f, &place))
                    };
                    let _ = write!(
                        tagged_enc,
                        "if {test} {{\nlet mut t = bytes::BytesMut::new();\n{{\nlet w = &mut t;\n{body}}}\ntagged.push(({tag}, t.freeze()));\n}}\n"
                    );
                }
            }

            // decode
            let read = self.read_field(name, f, "buf", compact);
            let default = self.default_expr(f);
            let is_tagged = f.tag.is_some() && tag_c != "false";
            let mutability = if is_tagged { "mut " } else { "" };
            match reg_c.as_str() {
                "true" => {
                    let _ = writeln!(dec, "let {mutability}{local} = {read};");
                }
                "false" => {
                    let _ = writeln!(dec, "let {mutability}{local} = {default};");
                }
                r => {
                    let _ = writeln!(dec, "let {mutability}{local} = if {r} {{\n{read}\n}} else {{\n{default}\n}};");
                }
            }
            if is_tagged {
                let tread = self.read_field(name, f, "buf", "true");
                let tag = f.tag.unwrap_or_default();
                let guard = if tag_c == "true" { String::new() } else { format!(" if {tag_c}") };
                let _ = writeln!(tagged_dec, "{tag}{guard} => {{\nlet buf = &mut data;\n{local} = {tread};\n}}");
            }
            let _ = writeln!(ctor, "{ident}: {local},");
        }

        // Tagged section.
        let has_flex = flex_cond != "false";
        if has_flex {
            let push_tags = if tagged_enc.is_empty() {
                "p::write_tag_section(w, Vec::new(), &self.unknown_tagged_fields)?;\n".to_string()
            } else {
                format!(
                    "let mut tagged: Vec<(u32, bytes::Bytes)> = Vec::new();\n{tagged_enc}p::write_tag_section(w, tagged, &self.unknown_tagged_fields)?;\n"
                )
            };
            if flex_cond == "true" {
                enc.push_str(&push_tags);
            } else {
                let _ = write!(enc, "if {flex_cond} {{\n{push_tags}}}\n");
            }
            let arms = if tagged_dec.is_empty() {
                "let n_tags = p::read_tag_count(buf)?;\nfor _ in 0..n_tags {\n\
                 let (tag, data) = p::read_tagged_field(buf)?;\n\
                 unknown_tagged_fields.push(p::RawTaggedField { tag, data });\n}\n"
                    .to_string()
            } else {
                format!(
                    "let n_tags = p::read_tag_count(buf)?;\nfor _ in 0..n_tags {{\n\
                     let (tag, mut data) = p::read_tagged_field(buf)?;\nmatch tag {{\n{tagged_dec}\
                     _ => unknown_tagged_fields.push(p::RawTaggedField {{ tag, data }}),\n}}\n}}\n"
                )
            };
            if flex_cond == "true" {
                dec.push_str(&arms);
            } else {
                let _ = write!(dec, "if {flex_cond} {{\n{arms}}}\n");
            }
        }

        let version_check = if top {
            format!(
                "if !Self::VERSIONS.contains(version) {{\nreturn Err(ProtocolError::UnsupportedVersion {{ api_key: {}, api_name: \"{}\", version }});\n}}\n",
                self.spec.api_key.unwrap_or(-1),
                self.spec.name
            )
        } else {
            String::new()
        };
        let compact_let = |body: &str| -> String {
            if body.contains("compact") && !self.flexible.is_none() {
                format!("let compact = {flex_cond};\n")
            } else {
                String::new()
            }
        };
        let enc_full = format!("{version_check}{}{enc}Ok(())\n", compact_let(&enc));
        let unknown_decl = if has_flex {
            "let mut unknown_tagged_fields = Vec::new();\n"
        } else {
            "let unknown_tagged_fields = Vec::new();\n"
        };
        let dec_full = format!(
            "{version_check}{}{unknown_decl}{dec}Ok({name} {{\n{ctor}unknown_tagged_fields,\n}})\n",
            compact_let(&dec)
        );
        let enc_v = if uses_ident(&enc_full, "version") { "version" } else { "_version" };
        let dec_v = if uses_ident(&dec_full, "version") { "version" } else { "_version" };
        let dec_buf = if uses_ident(&dec_full, "buf") { "buf" } else { "_buf" };
        let enc_w = if uses_ident(&enc_full, "w") { "w" } else { "_w" };

        self.emit_sample(out, name, fields);
        if top {
            let m = &self.spec;
            let flex = if self.flexible.is_none() {
                "VersionRange::NONE".to_string()
            } else {
                format!("VersionRange::new({}, {})", self.flexible.min, self.flexible.max)
            };
            let _ = writeln!(
                out,
                "impl Message for {name} {{\n\
                 const NAME: &'static str = \"{name}\";\n\
                 const VERSIONS: VersionRange = VersionRange::new({}, {});\n\
                 const FLEXIBLE_VERSIONS: VersionRange = {flex};\n\
                 fn encode<W: Writer + ?Sized>(&self, {enc_w}: &mut W, {enc_v}: i16) -> Result<()> {{\n{enc_full}}}\n\
                 fn decode({dec_buf}: &mut bytes::Bytes, {dec_v}: i16) -> Result<Self> {{\n{dec_full}}}\n}}\n",
                m.valid_versions.min, m.valid_versions.max
            );
        } else {
            let _ = writeln!(
                out,
                "impl {name} {{\n\
                 /// Writes this struct at `version` of the enclosing message.\n\
                 pub fn encode<W: Writer + ?Sized>(&self, {enc_w}: &mut W, {enc_v}: i16) -> Result<()> {{\n{enc_full}}}\n\
                 /// Reads this struct at `version` of the enclosing message.\n\
                 pub fn decode({dec_buf}: &mut bytes::Bytes, {dec_v}: i16) -> Result<Self> {{\n{dec_full}}}\n}}\n"
            );
        }
    }
}

/// The versions in which a field is a regular (not tagged) field.
fn regular_versions(f: &Field) -> Versions {
    if f.tagged_versions.is_none() {
        f.versions
    } else if f.tagged_versions.min <= f.versions.min {
        Versions::NONE
    } else {
        Versions { min: f.versions.min, max: f.versions.max.min(f.tagged_versions.min - 1) }
    }
}

/// Collects every struct a message defines, in order of first appearance.
fn collect_structs(
    fields: &[Field],
    common: &BTreeMap<String, StructSpec>,
    out: &mut Vec<(String, Vec<Field>, String)>,
    seen: &mut BTreeMap<String, ()>,
) {
    for f in fields {
        if let Some(sname) = f.ty.struct_name() {
            if !seen.contains_key(sname) {
                seen.insert(sname.to_string(), ());
                let (sfields, doc) = if !f.fields.is_empty() {
                    (f.fields.clone(), f.about.clone())
                } else if let Some(c) = common.get(sname) {
                    (c.fields.clone(), format!("Common struct {sname}."))
                } else {
                    panic!("struct {sname} has no definition");
                };
                out.push((sname.to_string(), sfields.clone(), doc));
                collect_structs(&sfields, common, out, seen);
            } else if !f.fields.is_empty() {
                // Kafka allows the same struct name to be used twice only with identical fields.
            }
        }
    }
}

pub fn module_name(spec: &Spec) -> String {
    snake(&spec.name)
}

/// Generates the Rust module for one message definition.
pub fn emit_spec(spec: &Spec) -> String {
    let common: BTreeMap<String, StructSpec> =
        spec.common_structs.iter().map(|s| (s.name.clone(), s.clone())).collect();
    let mut nested = Vec::new();
    let mut seen = BTreeMap::new();
    seen.insert(spec.name.clone(), ());
    collect_structs(&spec.fields, &common, &mut nested, &mut seen);
    let mut structs: BTreeMap<String, StructSpec> = BTreeMap::new();
    for (n, fs, _) in &nested {
        structs.insert(n.clone(), StructSpec { name: n.clone(), fields: fs.clone() });
    }
    let ctx = Ctx { spec, structs, flexible: spec.flexible_versions.intersect(&spec.valid_versions) };

    let mut out = String::new();
    let _ = writeln!(out, "// Generated by kafka-protocol-codegen from {}. Do not edit.\n", spec.file);
    let kind = match spec.kind {
        Kind::Request => "request",
        Kind::Response => "response",
        Kind::Header => "header",
        Kind::Data => "data",
    };
    let mut mdoc = format!("Kafka's `{}` {kind}", spec.name);
    if let Some(k) = spec.api_key {
        let _ = write!(mdoc, " (api key {k})");
    }
    let _ = write!(mdoc, ", versions {}", spec.valid_versions.describe());
    if !ctx.flexible.is_none() {
        let _ = write!(mdoc, ", flexible from version {}", ctx.flexible.min);
    } else {
        mdoc.push_str(", never flexible");
    }
    if !spec.deprecated_versions.is_none() {
        let _ = write!(mdoc, ", deprecated versions {}", spec.deprecated_versions.describe());
    }
    if spec.latest_version_unstable {
        mdoc.push_str(", latest version unstable");
    }
    mdoc.push('.');
    for line in mdoc.lines() {
        let _ = writeln!(out, "//! {line}");
    }
    out.push('\n');
    out.push_str("#[allow(unused_imports)]\nuse crate::error::{ProtocolError, Result};\n");
    out.push_str("#[allow(unused_imports)]\nuse crate::message::{Message, VersionRange};\n");
    out.push_str("#[allow(unused_imports)]\nuse crate::primitives::{self as p, Writer};\n\n");

    let top_doc = format!("{mdoc}\n\nSee the module documentation for the versions each field exists in.");
    ctx.emit_struct(&mut out, &spec.name, &spec.fields, &top_doc, true);
    for (n, fs, doc) in &nested {
        let d = if doc.is_empty() { format!("Part of `{}`.", spec.name) } else { doc_escape(doc) };
        ctx.emit_struct(&mut out, n, fs, &d, false);
    }
    out
}
