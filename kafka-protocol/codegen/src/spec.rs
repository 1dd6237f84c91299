//! Reading Kafka's JSON message definitions (JSON with `//` comments) into typed specs.

use serde_json::Value;

/// An inclusive version range; `min > max` means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub min: i16,
    pub max: i16,
}

impl Versions {
    pub const NONE: Versions = Versions { min: 1, max: 0 };

    pub fn parse(s: &str) -> Result<Versions, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(Versions::NONE);
        }
        let num = |t: &str| t.trim().parse::<i16>().map_err(|e| format!("bad version '{t}' in '{s}': {e}"));
        if let Some(lo) = s.strip_suffix('+') {
            return Ok(Versions { min: num(lo)?, max: i16::MAX });
        }
        if let Some((lo, hi)) = s.split_once('-') {
            return Ok(Versions { min: num(lo)?, max: num(hi)? });
        }
        let v = num(s)?;
        Ok(Versions { min: v, max: v })
    }

    pub fn is_none(&self) -> bool {
        self.min > self.max
    }

    pub fn contains(&self, v: i16) -> bool {
        self.min <= v && v <= self.max
    }

    pub fn intersect(&self, other: &Versions) -> Versions {
        Versions { min: self.min.max(other.min), max: self.max.min(other.max) }
    }

    /// Whether every version in `within` is in `self`.
    pub fn covers(&self, within: &Versions) -> bool {
        within.is_none() || (self.min <= within.min && within.max <= self.max)
    }

    pub fn describe(&self) -> String {
        if self.is_none() {
            "none".into()
        } else if self.max == i16::MAX {
            format!("{}+", self.min)
        } else if self.min == self.max {
            format!("{}", self.min)
        } else {
            format!("{}-{}", self.min, self.max)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    String,
    Bytes,
    Records,
    Uuid,
    Struct(String),
    Array(Box<FieldType>),
}

impl FieldType {
    pub fn parse(s: &str) -> FieldType {
        if let Some(inner) = s.strip_prefix("[]") {
            return FieldType::Array(Box::new(FieldType::parse(inner)));
        }
        match s {
            "bool" => FieldType::Bool,
            "int8" => FieldType::Int8,
            "int16" => FieldType::Int16,
            "uint16" => FieldType::Uint16,
            "int32" => FieldType::Int32,
            "uint32" => FieldType::Uint32,
            "int64" => FieldType::Int64,
            "float64" => FieldType::Float64,
            "string" => FieldType::String,
            "bytes" => FieldType::Bytes,
            "records" => FieldType::Records,
            "uuid" => FieldType::Uuid,
            other => FieldType::Struct(other.to_string()),
        }
    }

    pub fn is_struct(&self) -> bool {
        matches!(self, FieldType::Struct(_))
    }

    /// The struct this type names, directly or as an array element.
    pub fn struct_name(&self) -> Option<&str> {
        match self {
            FieldType::Struct(n) => Some(n),
            FieldType::Array(inner) => inner.struct_name(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub versions: Versions,
    pub nullable_versions: Versions,
    pub tagged_versions: Versions,
    pub tag: Option<u32>,
    pub default: Option<String>,
    pub ignorable: bool,
    pub about: String,
    pub fields: Vec<Field>,
    /// A field-level override of the message's flexible versions (RequestHeader.ClientId).
    pub flexible_versions: Option<Versions>,
    pub entity_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StructSpec {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Header,
    Data,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub file: String,
    pub name: String,
    pub kind: Kind,
    pub api_key: Option<i16>,
    pub valid_versions: Versions,
    pub flexible_versions: Versions,
    pub deprecated_versions: Versions,
    pub latest_version_unstable: bool,
    pub listeners: Vec<String>,
    pub fields: Vec<Field>,
    pub common_structs: Vec<StructSpec>,
}

/// Strips `//` comments (outside string literals) so serde_json can read the file.
pub fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut in_str = false;
        let mut escaped = false;
        let mut prev_slash = false;
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if in_str {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_str = false;
                }
                continue;
            }
            if c == '"' {
                in_str = true;
                prev_slash = false;
                continue;
            }
            if c == '/' && prev_slash {
                cut = i - 1;
                break;
            }
            prev_slash = c == '/';
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn versions_of(v: &Value, key: &str) -> Result<Option<Versions>, String> {
    match get_str(v, key) {
        Some(s) => Versions::parse(s).map(Some),
        None => Ok(None),
    }
}

fn parse_field(v: &Value) -> Result<Field, String> {
    let name = get_str(v, "name").ok_or("field without name")?.to_string();
    let ty = FieldType::parse(get_str(v, "type").ok_or_else(|| format!("field {name} without type"))?);
    let versions = versions_of(v, "versions")?.ok_or_else(|| format!("field {name} without versions"))?;
    let nullable_versions = versions_of(v, "nullableVersions")?.unwrap_or(Versions::NONE);
    let tagged_versions = versions_of(v, "taggedVersions")?.unwrap_or(Versions::NONE);
    // Kafka writes tags as numbers, and in one place as a string ("tag": "0").
    let tag = match v.get("tag") {
        Some(Value::Number(n)) => n.as_u64().map(|t| t as u32),
        Some(Value::String(s)) => Some(s.parse::<u32>().map_err(|e| format!("field {name}: bad tag {s}: {e}"))?),
        _ => None,
    };
    let default = v.get("default").map(|d| match d {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let ignorable = v.get("ignorable").and_then(Value::as_bool).unwrap_or(false);
    let about = get_str(v, "about").unwrap_or("").to_string();
    let fields = match v.get("fields").and_then(Value::as_array) {
        Some(fs) => fs.iter().map(parse_field).collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let flexible_versions = versions_of(v, "flexibleVersions")?;
    let entity_type = get_str(v, "entityType").map(str::to_string);
    if tag.is_some() == tagged_versions.is_none() {
        return Err(format!("field {name}: tag and taggedVersions must come together"));
    }
    Ok(Field {
        name,
        ty,
        versions,
        nullable_versions,
        tagged_versions,
        tag,
        default,
        ignorable,
        about,
        fields,
        flexible_versions,
        entity_type,
    })
}

pub fn parse_spec(file: &str, src: &str) -> Result<Spec, String> {
    let v: Value = serde_json::from_str(&strip_comments(src)).map_err(|e| format!("{file}: {e}"))?;
    let name = get_str(&v, "name").ok_or("no name")?.to_string();
    let kind = match get_str(&v, "type") {
        Some("request") => Kind::Request,
        Some("response") => Kind::Response,
        Some("header") => Kind::Header,
        _ => Kind::Data,
    };
    let api_key = v.get("apiKey").and_then(Value::as_i64).map(|k| k as i16);
    let valid_versions = versions_of(&v, "validVersions")?.ok_or("no validVersions")?;
    let flexible_versions = versions_of(&v, "flexibleVersions")?.ok_or("no flexibleVersions")?;
    let deprecated_versions = versions_of(&v, "deprecatedVersions")?.unwrap_or(Versions::NONE);
    let latest_version_unstable = v.get("latestVersionUnstable").and_then(Value::as_bool).unwrap_or(false);
    let listeners = v
        .get("listeners")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let fields = v
        .get("fields")
        .and_then(Value::as_array)
        .ok_or("no fields")?
        .iter()
        .map(parse_field)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{file}: {e}"))?;
    let mut common_structs = Vec::new();
    if let Some(cs) = v.get("commonStructs").and_then(Value::as_array) {
        for s in cs {
            let sname = get_str(s, "name").ok_or("common struct without name")?.to_string();
            let sfields = s
                .get("fields")
                .and_then(Value::as_array)
                .ok_or("common struct without fields")?
                .iter()
                .map(parse_field)
                .collect::<Result<Vec<_>, _>>()?;
            common_structs.push(StructSpec { name: sname, fields: sfields });
        }
    }
    Ok(Spec {
        file: file.to_string(),
        name,
        kind,
        api_key,
        valid_versions,
        flexible_versions,
        deprecated_versions,
        latest_version_unstable,
        listeners,
        fields,
        common_structs,
    })
}
