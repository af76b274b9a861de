//! Runtime types of `routes[].resource` (one check or several) and
//! `routes[].rewrites` (checks templated with a value the request carries),
//! validated; the request-time side is [`crate::authz::rewrite`].

use http::HeaderName;

use super::ResourceAttributes;

/// Most distinct rewrite values one request may carry: each costs a
/// SubjectAccessReview when not cached, so more are refused (400).
pub const MAX_REWRITE_VALUES: usize = 16;

/// One resource check of a route (`routes[].resource`, or one entry of its list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceCheck {
    /// The attributes; a templated field holds its template text until rendered.
    pub attributes: ResourceAttributes,
    /// The verb checked whatever the method; `None`: the method's Kubernetes verb.
    pub verb: Option<String>,
    /// The fields that take the rewrite value, with their templates.
    pub templates: Vec<(Field, Template)>,
}

impl ResourceCheck {
    /// A check of fixed attributes with the method's verb.
    pub fn fixed(attributes: ResourceAttributes) -> Self {
        Self {
            attributes,
            verb: None,
            templates: Vec::new(),
        }
    }
}

/// A field of [`ResourceAttributes`] a template can fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `namespace`: an RFC 1123 label.
    Namespace,
    /// `group`: an RFC 1123 subdomain.
    Group,
    /// `version`: an RFC 1123 label.
    Version,
    /// `resource`: an RFC 1123 label.
    Resource,
    /// `subresource`: an RFC 1123 label.
    Subresource,
    /// `name`: an RFC 1123 subdomain.
    Name,
}

impl Field {
    /// Every field, in `ResourceAttributes` order.
    pub const ALL: [Self; 6] = [
        Self::Namespace,
        Self::Group,
        Self::Version,
        Self::Resource,
        Self::Subresource,
        Self::Name,
    ];

    /// The key as written in `routes[].resource`.
    pub const fn key(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Group => "group",
            Self::Version => "version",
            Self::Resource => "resource",
            Self::Subresource => "subresource",
            Self::Name => "name",
        }
    }

    /// The field of `r`.
    pub fn get(self, r: &ResourceAttributes) -> &str {
        match self {
            Self::Namespace => &r.namespace,
            Self::Group => &r.group,
            Self::Version => &r.version,
            Self::Resource => &r.resource,
            Self::Subresource => &r.subresource,
            Self::Name => &r.name,
        }
    }

    /// The field of `r`, to set.
    pub fn get_mut(self, r: &mut ResourceAttributes) -> &mut String {
        match self {
            Self::Namespace => &mut r.namespace,
            Self::Group => &mut r.group,
            Self::Version => &mut r.version,
            Self::Resource => &mut r.resource,
            Self::Subresource => &mut r.subresource,
            Self::Name => &mut r.name,
        }
    }

    /// Whether a rendered value is a valid value of this field, as
    /// kube-apiserver validates it: a label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`,
    /// at most 63) or a subdomain (labels joined by `.`, at most 253).
    pub fn accepts(self, v: &str) -> bool {
        match self {
            Self::Namespace | Self::Version | Self::Resource | Self::Subresource => is_label(v),
            Self::Group | Self::Name => {
                v.len() <= 253 && !v.is_empty() && v.split('.').all(is_label)
            }
        }
    }

    /// What [`Self::accepts`] requires, for messages.
    pub const fn rule(self) -> &'static str {
        match self {
            Self::Namespace | Self::Version | Self::Resource | Self::Subresource => {
                "an RFC 1123 label: lower-case letters, digits and '-', at most 63"
            }
            Self::Group | Self::Name => {
                "an RFC 1123 subdomain: lower-case letters, digits, '-' and '.', at most 253"
            }
        }
    }
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A field template: literal text and `{{ .Value }}` places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value,
}

impl Template {
    /// Parses `text`: `None` when it has no `{{`; an error for any action
    /// other than `{{ .Value }}` (spaces and `-` trim markers allowed, as Go
    /// templates write them) or an unclosed `{{`.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        if !text.contains("{{") {
            return Ok(None);
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let (before, after) = rest.split_at(start);
            let end = after
                .find("}}")
                .ok_or_else(|| format!("{text:?} has an unclosed '{{{{'"))?;
            let action = after[2..end]
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            if action != ".Value" {
                return Err(format!(
                    "{text:?}: only {{{{ .Value }}}} can be templated, not {{{{{}}}}}",
                    &after[2..end]
                ));
            }
            if !before.is_empty() {
                pieces.push(Piece::Text(before.to_owned()));
            }
            pieces.push(Piece::Value);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Some(Self(pieces)))
    }

    /// The template with `value` in every place, in one pass: a value is
    /// never read as a template itself.
    pub fn render(&self, value: &str) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Value => value,
            })
            .collect()
    }
}

/// `routes[].rewrites` validated: where the value comes from, and what
/// happens to it before forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrites {
    /// The query parameter read (exact, case-sensitive, after percent-decoding).
    pub query_parameter: Option<String>,
    /// The header read (every line, comma-separated elements).
    pub header: Option<HeaderName>,
    /// What the upstream gets.
    pub consume: Consume,
}

/// What happens to the rewrite parameter or header before forwarding, so
/// authgate and the upstream cannot read different values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consume {
    /// Every copy is replaced by the authorized values, spelled canonically
    /// (`name=value` pairs, one header line per value). The default.
    #[default]
    Pin,
    /// Every copy is removed.
    Remove,
    /// Forwarded as sent, which is allowed only when every copy is already
    /// spelled canonically (else 400).
    Keep,
}

impl Consume {
    /// The name written in `routes[].rewrites.consume`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pin => "pin",
            Self::Remove => "remove",
            Self::Keep => "keep",
        }
    }

    /// The mode named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Pin, Self::Remove, Self::Keep]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_value_action_is_a_template() {
        let t = |s: &str| Template::parse(s).map(|t| t.map(|t| t.render("ns1")));
        assert_eq!(t("monitoring"), Ok(None));
        assert_eq!(t("{{.Value}}"), Ok(Some("ns1".into())));
        assert_eq!(t("{{ .Value }}"), Ok(Some("ns1".into())));
        assert_eq!(t("{{- .Value -}}"), Ok(Some("ns1".into())));
        assert_eq!(t("app-{{ .Value }}-x"), Ok(Some("app-ns1-x".into())));
        assert_eq!(t("{{.Value}}{{.Value}}"), Ok(Some("ns1ns1".into())));
        for bad in [
            "{{ .Value",
            "{{ .Other }}",
            "{{ printf \"%s\" .Value }}",
            "{{.Value | lower}}",
            "{{}}",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
        // A value that looks like a template is inserted literally, once.
        let tpl = Template::parse("{{ .Value }}").unwrap().unwrap();
        assert_eq!(tpl.render("{{ .Value }}"), "{{ .Value }}");
    }

    #[test]
    fn fields_accept_what_the_apiserver_accepts() {
        for (field, v, ok) in [
            (Field::Namespace, "kube-system", true),
            (Field::Namespace, "a", true),
            (Field::Namespace, "", false),
            (Field::Namespace, "Default", false),
            (Field::Namespace, "-a", false),
            (Field::Namespace, "a-", false),
            (Field::Namespace, "a.b", false),
            (Field::Namespace, "*", false),
            (Field::Namespace, "a b", false),
            (Field::Namespace, "a%20b", false),
            (Field::Namespace, "{{", false),
            (Field::Namespace, &"a".repeat(63), true),
            (Field::Namespace, &"a".repeat(64), false),
            (Field::Name, "node-exporter.v1", true),
            (Field::Name, "a..b", false),
            (Field::Name, "../x", false),
            (Field::Group, "monitoring.coreos.com", true),
            (Field::Group, &"a.".repeat(127), false),
        ] {
            assert_eq!(field.accepts(v), ok, "{field:?} {v:?}");
        }
    }
}
