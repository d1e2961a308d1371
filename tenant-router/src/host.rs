//! Host → which part of Silo answers: the apex (control plane), a tenant subdomain, or nobody.

/// The slug of the tenant a request is for, as classified from its Host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSlug(pub String);

/// A normalised host name outside the base domain, to be looked up among custom domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomDomain(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// The base domain itself: the control plane.
    Apex,
    /// `<slug>.<base>`.
    Tenant(TenantSlug),
    /// A host name outside the base domain: perhaps a tenant's verified custom domain.
    Custom(CustomDomain),
    /// Anything else: malformed, nested subdomains, or another domain altogether.
    Unknown,
}

/// Classifies a Host header value against the base domain. Case, a port and a trailing dot are
/// normalised away; anything that is not exactly the base or one valid label under it is
/// `Unknown` (so `evilsite.com` never matches base `site.com`, and `a.b.site.com` is not `b`).
pub fn classify_host(raw_host: &str, base_domain: &str) -> HostKind {
    let Some(host) = normalise(raw_host) else {
        return HostKind::Unknown;
    };
    if host == base_domain {
        return HostKind::Apex;
    }
    let Some(label) = host
        .strip_suffix(base_domain)
        .and_then(|prefix| prefix.strip_suffix('.'))
    else {
        // Outside the base domain: a candidate custom domain if it is a proper host name.
        return match control_plane::domains::normalise_domain(&host) {
            Some(domain) => HostKind::Custom(CustomDomain(domain)),
            None => HostKind::Unknown,
        };
    };
    let valid_label = (1..=63).contains(&label.len())
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if valid_label {
        HostKind::Tenant(TenantSlug(label.to_owned()))
    } else {
        HostKind::Unknown
    }
}

/// Lower-cases, strips the port and one trailing dot; refuses userinfo, IPv6 literals, empty
/// labels and characters a host name cannot hold.
fn normalise(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.contains(['@', '/', '\\', '[', ' ']) {
        return None;
    }
    let without_port = match raw.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => name,
        Some(_) => return None,
        None => raw,
    };
    let host = without_port
        .strip_suffix('.')
        .unwrap_or(without_port)
        .to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| !label.is_empty())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(slug: &str) -> HostKind {
        HostKind::Tenant(TenantSlug(slug.to_owned()))
    }

    fn custom(domain: &str) -> HostKind {
        HostKind::Custom(CustomDomain(domain.to_owned()))
    }

    #[test]
    fn classification_table() {
        let cases: &[(&str, &str, HostKind)] = &[
            ("localhost", "localhost", HostKind::Apex),
            ("localhost:8080", "localhost", HostKind::Apex),
            ("LOCALHOST.", "localhost", HostKind::Apex),
            ("acme.localhost:8080", "localhost", tenant("acme")),
            ("ACME.LocalHost.", "localhost", tenant("acme")),
            ("acme.site.com", "site.com", tenant("acme")),
            // Outside the base: only ever a custom-domain lookup, never a tenant by slug.
            ("evilsite.com", "site.com", custom("evilsite.com")),
            ("acme.evilsite.com", "site.com", custom("acme.evilsite.com")),
            (
                "Shop.Example.org.:443",
                "site.com",
                custom("shop.example.org"),
            ),
            ("evilsite", "site.com", HostKind::Unknown),
            ("127.0.0.1:8080", "site.com", HostKind::Unknown),
            ("a.b.site.com", "site.com", HostKind::Unknown),
            (".site.com", "site.com", HostKind::Unknown),
            ("acme..site.com", "site.com", HostKind::Unknown),
            ("-acme.site.com", "site.com", HostKind::Unknown),
            ("ac_me.site.com", "site.com", HostKind::Unknown),
            ("acme.site.com:", "site.com", HostKind::Unknown),
            ("acme.site.com:80:80", "site.com", HostKind::Unknown),
            ("user@acme.site.com", "site.com", HostKind::Unknown),
            ("[::1]:8080", "site.com", HostKind::Unknown),
            ("", "site.com", HostKind::Unknown),
            ("site.com.evil.org", "site.com", custom("site.com.evil.org")),
        ];
        for (host, base, expected) in cases {
            assert_eq!(
                &classify_host(host, base),
                expected,
                "host {host:?} on base {base:?}"
            );
        }
    }
}
